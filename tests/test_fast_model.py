"""The fast model as users reach it: manifest role, --fast in predict/serve, per-request fast, add_fast."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from hashtag.export.add_fast import add_fast_model
from hashtag.export.errors import ExportError
from hashtag.runtime import Options, Tagger, load_bundle
from hashtag.runtime.cli import main
from hashtag.runtime.errors import BundleError, ModelSelectionError
from hashtag.runtime.images import load_image
from hashtag.runtime.preprocess import prepare_batch
from hashtag.serve.config import ServeConfig
from servekit import thread_server
from tinybundle import DEFAULT_MODELS, FAST_MODEL, TAGS, expected_probabilities, make_bundle, make_photo

ENSEMBLE = [m["name"] for m in DEFAULT_MODELS]
FAST = FAST_MODEL["name"]


@pytest.fixture(scope="module")
def fast_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three tiny ensemble models plus a tiny fast model (its own thresholds: 0.3)."""
    root = make_bundle(tmp_path_factory.mktemp("fast") / "bundle", (*DEFAULT_MODELS, FAST_MODEL))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["models"][-1]["thresholds"] = {t: 0.3 for t in TAGS}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def fast_scores(bundle: Path, photo: Path) -> np.ndarray:
    """What the tiny fast graph computes for ``photo``, independently of the Tagger."""
    spec = load_bundle(bundle).model(FAST)
    x = prepare_batch([load_image(photo, min_side=spec.input_size)], spec.input_size, spec.preprocessing)
    return expected_probabilities(x, len(TAGS), FAST_MODEL["seed"])[0]


def test_roles_in_the_manifest(fast_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(fast_bundle)
    assert bundle.ensemble_names == tuple(ENSEMBLE)
    assert bundle.fast_name == FAST
    assert load_bundle(make_bundle(tmp_path / "plain")).ensemble_names == tuple(ENSEMBLE)
    with pytest.raises(ModelSelectionError, match="has no fast model"):
        load_bundle(tmp_path / "plain").fast_name

    def edit(change: dict) -> Path:
        root = tmp_path / f"edited{len(list(tmp_path.iterdir()))}"
        shutil.copytree(fast_bundle, root)
        manifest = json.loads((root / "manifest.json").read_text())
        for i, role in change.items():
            manifest["models"][i]["role"] = role
        (root / "manifest.json").write_text(json.dumps(manifest))
        return root

    with pytest.raises(BundleError, match="unknown role 'turbo'"):
        load_bundle(edit({3: "turbo"}))
    with pytest.raises(BundleError, match="more than one fast model"):
        load_bundle(edit({2: "fast"}))
    with pytest.raises(BundleError, match="no ensemble model"):
        load_bundle(edit({0: "fast", 1: "fast", 2: "fast"}))
    root = edit({})
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["models"][3]["cpu_precision"] = {"x86_64": "fp16"}  # a precision it does not ship
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="cpu_precision must map CPU kinds"):
        load_bundle(root)


def test_tagger_defaults_to_the_ensemble_and_runs_the_fast_model_when_named(fast_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "p.jpg", seed=5)
    default = Tagger(fast_bundle, provider="cpu")
    assert default.names == tuple(ENSEMBLE)
    assert set(default.predict_one(photo).models) == set(ENSEMBLE)

    asked = Tagger(fast_bundle, provider="cpu", models=["vgg16", FAST])
    assert asked.default_names == ("vgg16", FAST)  # the models asked for all run
    assert set(asked.predict_one(photo).models) == {"vgg16", FAST}
    both = Tagger(fast_bundle, provider="cpu", models=[*ENSEMBLE, FAST], default_models=ENSEMBLE)
    assert both.default_names == tuple(ENSEMBLE)
    ensemble = both.predict_one(photo)
    assert set(ensemble.models) == set(ENSEMBLE)
    assert ensemble.scores == pytest.approx(default.predict_one(photo).scores, abs=1e-6)
    fast = both.predict_one(photo, Options(models=(FAST,)))
    assert list(fast.models) == [FAST]
    expected = fast_scores(fast_bundle, photo)
    assert [fast.scores[t] for t in TAGS] == pytest.approx(expected.tolist(), abs=1e-5)
    assert fast.hashtags == sorted((f"#{t}" for t, s in zip(TAGS, expected) if s >= 0.3),
                                   key=lambda h: (-fast.scores[h[1:]], h))


def test_predict_fast_runs_the_fast_model_alone(fast_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "p.jpg", seed=6)
    runner = CliRunner()
    res = runner.invoke(main, ["predict", "--bundle", str(fast_bundle), "--fast", "--json", str(photo)])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.splitlines()[-1])
    assert list(record["models"]) == [FAST]
    assert [record["scores"][t] for t in TAGS] == pytest.approx(fast_scores(fast_bundle, photo).tolist(), abs=1e-5)
    plain = json.loads(runner.invoke(main, ["predict", "--bundle", str(fast_bundle), "--json", str(photo)])
                       .stdout.splitlines()[-1])
    assert set(plain["models"]) == set(ENSEMBLE)
    named = json.loads(runner.invoke(main, ["predict", "--bundle", str(fast_bundle), "--models", f"vgg16,{FAST}",
                                            "--json", str(photo)]).stdout.splitlines()[-1])
    assert set(named["models"]) == {"vgg16", FAST}
    clash = runner.invoke(main, ["predict", "--bundle", str(fast_bundle), "--fast", "--models", "vgg16", str(photo)])
    assert clash.exit_code == 1 and "ask for the fast model or for model names, not both" in clash.output
    none = runner.invoke(main, ["predict", "--bundle", str(make_bundle(tmp_path / "plain")), "--fast", str(photo)])
    assert none.exit_code == 1 and "has no fast model" in none.output
    models = runner.invoke(main, ["models", "--bundle", str(fast_bundle)])
    assert f"{FAST}: fast model (--fast), not in the ensemble" in models.output
    assert "vgg16: ensemble member" in models.output


def test_serve_answers_fast_per_request_and_with_fast_only(fast_bundle: Path, tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "p.jpg", seed=7)
    data = photo.read_bytes()
    expected_fast = Tagger(fast_bundle, provider="cpu", models=[FAST]).predict_one(data)
    expected_ensemble = Tagger(fast_bundle, provider="cpu").predict_one(data)
    with thread_server(ServeConfig(bundle=fast_bundle, provider="cpu")) as url:
        catalog = httpx.get(f"{url}/v1/models").json()
        assert catalog["served"] == [*ENSEMBLE, FAST] and catalog["default"] == ENSEMBLE and catalog["fast"] == FAST
        assert {m["name"]: m["role"] for m in catalog["models"]}[FAST] == "fast"
        post = lambda **params: httpx.post(f"{url}/v1/tags", content=data, params=params,  # noqa: E731
                                           headers={"Content-Type": "image/jpeg"}, timeout=30)
        (ensemble,) = post().json()["results"]
        assert set(ensemble["models"]) == set(ENSEMBLE)
        assert ensemble["scores"] == pytest.approx(expected_ensemble.scores, abs=1e-5)
        (fast,) = post(fast="true").json()["results"]
        assert list(fast["models"]) == [FAST]
        assert fast["scores"] == pytest.approx(expected_fast.scores, abs=1e-5)
        assert fast["hashtags"] == expected_fast.hashtags
        clash = post(fast="true", models="vgg16")
        assert clash.status_code == 422 and "not both" in clash.json()["error"]
    with thread_server(ServeConfig(bundle=fast_bundle, provider="cpu", fast=True)) as url:
        catalog = httpx.get(f"{url}/v1/models").json()
        assert catalog["served"] == [FAST] and catalog["default"] == [FAST]
        (record,) = httpx.post(f"{url}/v1/tags", content=data, headers={"Content-Type": "image/jpeg"},
                               timeout=30).json()["results"]
        assert list(record["models"]) == [FAST]
    with thread_server(ServeConfig(bundle=make_bundle(tmp_path / "plain"), provider="cpu")) as url:
        refused = httpx.post(f"{url}/v1/tags", content=data, params={"fast": "true"},
                             headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert refused.status_code == 422 and refused.json()["error"] == "this server runs no fast model"


def test_add_fast_merges_checks_and_replaces(tmp_path: Path) -> None:
    target = make_bundle(tmp_path / "target")
    before = set(p.name for p in target.iterdir())
    source = make_bundle(tmp_path / "src", ({**FAST_MODEL, "role": "ensemble"},))
    bundle = add_fast_model(source, target, ["int8", "fp32"], {"x86_64": "int8"})
    assert bundle.fast_name == FAST and bundle.ensemble_names == tuple(ENSEMBLE)
    assert bundle.fast.cpu_precision == {"x86_64": "int8"}
    assert set(bundle.model(FAST).variants) == {"int8", "fp32"}
    assert {p.name for p in target.iterdir()} == before | {f"{FAST}.int8.onnx", f"{FAST}.fp32.onnx"}
    # again, with int8 only: the fp32 file of the replaced fast model goes
    bundle = add_fast_model(source, target, ["int8"])
    assert set(bundle.model(FAST).variants) == {"int8"}
    assert not (target / f"{FAST}.fp32.onnx").exists()
    with pytest.raises(ExportError, match="holds 3 models"):
        add_fast_model(make_bundle(tmp_path / "three"), target, ["int8"])
    other_tags = make_bundle(tmp_path / "tags", ({**FAST_MODEL, "role": "ensemble"},), tags=("cat", "dog"))
    with pytest.raises(ExportError, match="tags"):
        add_fast_model(other_tags, target, ["int8"])
    manifest = (target / "manifest.json").read_text()
    with pytest.raises(ExportError, match="already has an ensemble model named 'vgg16'"):
        add_fast_model(make_bundle(tmp_path / "v", (DEFAULT_MODELS[0],)), target, ["int8"])
    assert (target / "manifest.json").read_text() == manifest  # refused: nothing changed


def test_bot_fast_per_chat(fast_bundle: Path, tmp_path: Path) -> None:
    """/fast on switches one chat to the fast model; other chats keep the ensemble; /fast off switches back."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from fakes.telegram import FakeBotApi, FloodRules
    from hashtag.bot import replies
    from hashtag.bot.app import ALLOWED_UPDATES, build_application
    from hashtag.bot.config import BotConfig
    from hashtag.bot.tagging import LocalTagger

    token = "123456:FAST-token_s3cret"
    tagger = Tagger(fast_bundle, provider="cpu", models=[*ENSEMBLE, FAST])
    data = make_photo(tmp_path / "p.jpg", seed=8).read_bytes()
    fast_text = replies.prediction_text(tagger.predict_one(data, Options(models=(FAST,))))
    ensemble_text = replies.prediction_text(tagger.predict_one(data))
    assert fast_text != ensemble_text

    async def main() -> None:
        async with FakeBotApi(token, flood=FloodRules(message_interval_s=0.01)) as api:
            config = BotConfig(token=token, models=fast_bundle, api_url=api.url, workers=2, message_interval_s=0.01)
            with ThreadPoolExecutor(2) as executor:
                app = build_application(config, LocalTagger(tagger, executor))
                async with app:
                    await app.updater.start_polling(timeout=5, allowed_updates=ALLOWED_UPDATES)
                    await app.start()
                    try:
                        on = await api.answer(api.send_text(1, "/fast on"), 10)
                        assert on["text"] == replies.fast_text(True)
                        assert (await api.reply_to(api.send_photo(1, data, size=(64, 48)), 10))["text"] == fast_text
                        other = await api.reply_to(api.send_photo(2, data, size=(64, 48)), 10)
                        assert other["text"] == ensemble_text
                        assert (await api.answer(api.send_text(1, "/fast maybe"), 10))["text"] == replies.FAST_USAGE
                        off = await api.answer(api.send_text(1, "/fast off"), 10)
                        assert off["text"] == replies.fast_text(False)
                        again = await api.reply_to(api.send_photo(1, data, size=(64, 48)), 10)
                        assert again["text"] == ensemble_text
                    finally:
                        await app.updater.stop()
                        await app.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_card_section_is_written_between_markers_and_judges_the_targets(fast_bundle: Path, tmp_path: Path) -> None:
    from hashtag.export.fast_card import SECTION, fast_section

    def result(ap: float, precision: float, recall: float) -> dict:
        per_tag = {t: {"ap": ap} for t in TAGS}
        return {"per_tag": per_tag, "mAP": ap, "mAP_base": ap, "micro_precision": precision, "micro_recall": recall,
                "n_images": 9}

    report = {**{n: result(0.70, 0.6, 0.8) for n in ENSEMBLE}, "ensemble": result(0.80, 0.66, 0.87),
              FAST: result(0.79, 0.65, 0.86), "precision": {**{n: "int8" for n in ENSEMBLE}, FAST: "fp32"}}
    test = {FAST: {**result(0.9, 0.8, 0.9), "mAP_base": 0.91, "mAP_added": 0.89}, "precision": {FAST: "fp32"}}
    section = fast_section(load_bundle(fast_bundle), report, None, test,
                           {"training_data": {"corpus_train_with_teacher": 77, "corpus_size": 64}})
    assert section.startswith(SECTION.begin) and section.endswith(SECTION.end)
    assert "the teacher on 77 of its photos" in section and "fed at 64 px" in section
    assert "- ten-tag mAP: 0.790 vs the ensemble's 0.800 (target >= ensemble - 0.015): **met**" in section
    assert "- all-tag mAP: 0.790 vs the ensemble's 0.800 (target >= ensemble - 0.02): **met**" in section
    assert "precision 0.650 at recall 0.860 vs the ensemble's 0.660 at 0.870" in section and "**not met**" in section
    card = tmp_path / "README.md"
    card.write_text("# card\n\ntext\n\n## Reproduce\n\ncommands\n")
    SECTION.write(card, section)
    SECTION.write(card, section.replace("0.790", "0.791"))  # replaced, not added twice
    text = card.read_text()
    assert text.count(SECTION.begin) == 1 and "0.791" in text and text.index(SECTION.end) < text.index("## Reproduce")
    assert text.startswith("# card\n\ntext\n")


def test_add_fast_refused_after_staging_leaves_the_bundle_as_it_was(tmp_path: Path) -> None:
    target = make_bundle(tmp_path / "target", (*DEFAULT_MODELS, FAST_MODEL))
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    source = make_bundle(tmp_path / "src", ({**FAST_MODEL, "role": "ensemble"},))
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["models"][0]["variants"][0]["sha256"] = "0" * 64  # a file that is not what its manifest says
    (source / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="is not the manifest's 0000"):
        add_fast_model(source, target, ["int8", "fp32"])
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # nothing copied, nothing left
