"""model.json's record (``ModelRecord``): what training writes reads back the same, and what export relies on is
checked on read with one line naming the file (no TensorFlow)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashtag.runtime.manifest import Preprocessing
from hashtag.train.run_folder import ModelRecord, RunFolderError
from tinybundle import CAFFE, TAGS


def written(path: Path, **changes: object) -> Path:
    record = {"name": "vgg16", "input_size": 32, "preprocessing": CAFFE, "tags": list(TAGS),
              "thresholds": {t: 0.5 for t in TAGS}, "backbone": "vgg16", "training": {"selected": "gap-mlp/bce/aug0"}}
    path.write_text(json.dumps({k: v for k, v in {**record, **changes}.items() if v is not None}))
    return path


def test_a_record_round_trips_with_its_details(tmp_path: Path) -> None:
    record = ModelRecord("xception", 71, Preprocessing.from_dict(CAFFE), tuple(TAGS),
                         details={"backbone": "xception", "weights_source": {"path": tmp_path}})
    record.write(tmp_path / "model.json")
    back = ModelRecord.read(tmp_path / "model.json")
    assert (back.name, back.input_size, back.preprocessing, back.tags, back.thresholds) == \
        ("xception", 71, Preprocessing.from_dict(CAFFE), tuple(TAGS), None)
    assert back.details == {"backbone": "xception", "weights_source": {"path": str(tmp_path)}}
    assert "thresholds" not in back.to_dict()  # not evaluated yet
    evaluated = written(tmp_path / "evaluated.json")
    assert ModelRecord.read(evaluated).to_dict() == json.loads(evaluated.read_text())


@pytest.mark.parametrize(("changes", "message"), [
    ({"input_size": "224"}, "input_size must be an integer between 8 and 4096, got '224'"),
    ({"input_size": 5000}, "input_size must be an integer"),
    ({"preprocessing": None}, "lacks 'preprocessing'"),
    ({"preprocessing": {**CAFFE, "color_order": "RGB"}}, "colour order"),
    ({"tags": ["sea", "sea"]}, "tags must be distinct"),
    ({"thresholds": {"sea": 0.5}}, "thresholds must map exactly the tags"),
    ({"thresholds": {t: 1.5 for t in TAGS}}, r"thresholds must lie in \[0, 1\]"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_what_export_relies_on_is_checked_on_read(tmp_path: Path, changes: dict, message: str) -> None:
    path = written(tmp_path / "model.json", **changes)
    with pytest.raises(RunFolderError, match=message) as caught:
        ModelRecord.read(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_details_cannot_shadow_the_typed_fields() -> None:
    with pytest.raises(RunFolderError, match="must not repeat the typed fields"):
        ModelRecord("vgg16", 32, Preprocessing.from_dict(CAFFE), tuple(TAGS), details={"input_size": 64})
