"""hashtag.runtime.contract is the one definition of the record and the API: every reader is held to it."""
from __future__ import annotations

import re
from pathlib import Path

import httpx

from hashtag.runtime.contract import (
    ERROR_RECORD_FIELDS, MODEL_RECORD_FIELDS, RECORD_FIELDS, STATUS_MEANINGS, TAGS_PATH, UPLOAD_FIELD,
    ModelPrediction, Prediction, error_record, hashtag, tag_names,
)
from hashtag.serve.app import STATIC, ModelRecord, TagRecord
from hashtag.serve.config import ServeConfig
from servekit import thread_server

PREDICTION = Prediction("a.jpg", {"big tree": 0.9, "sea": 0.2}, ["#bigtree"],
                        {"vgg16": ModelPrediction({"big tree": 0.8, "sea": 0.6}, ["#bigtree", "#sea"])})


def test_records_have_the_contracts_fields_and_round_trip() -> None:
    record = PREDICTION.to_json()
    assert tuple(record) == RECORD_FIELDS
    assert tuple(record["models"]["vgg16"]) == MODEL_RECORD_FIELDS
    assert tuple(error_record("x.jpg", "truncated")) == ERROR_RECORD_FIELDS
    assert Prediction.from_json(record) == PREDICTION
    assert PREDICTION.tags == ["big tree"] and PREDICTION.models["vgg16"].tags == ["big tree", "sea"]
    assert tag_names([hashtag("big tree")], ["sea", "big tree"]) == ["big tree"]


def test_the_servers_declared_models_are_the_contracts_record() -> None:
    assert tuple(TagRecord.model_fields) == RECORD_FIELDS
    assert tuple(ModelRecord.model_fields) == MODEL_RECORD_FIELDS
    assert TagRecord.model_validate(error_record("x", "y")).model_dump(exclude_unset=True) == error_record("x", "y")


def test_the_openapi_schema_lists_every_refusal_with_its_meaning(tiny_bundle: Path) -> None:
    with thread_server(ServeConfig(bundle=tiny_bundle, workers=1)) as base:
        schema = httpx.get(base + "/openapi.json", timeout=30).json()
    responses = schema["paths"][TAGS_PATH]["post"]["responses"]
    for status, meaning in STATUS_MEANINGS.items():
        assert responses[str(int(status))]["description"] == meaning
    assert "TagsAnswer" in str(responses["200"])


def test_the_page_reads_only_record_fields_and_sends_the_upload_field() -> None:
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    read = set(re.findall(r"\b(?:record|part)\.(\w+)", script))
    assert read and read <= set(RECORD_FIELDS) | set(MODEL_RECORD_FIELDS), read
    assert f'form.append("{UPLOAD_FIELD}"' in script
    assert f'"{TAGS_PATH}' in script or f"'{TAGS_PATH}" in script or f"`{TAGS_PATH}" in script
