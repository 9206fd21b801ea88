"""The environment is read in one place: ``hashtag.runtime.settings``, typed, checked, secrets kept out of repr."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashtag.models import DEFAULT_BUNDLE
from hashtag.runtime.cache import cache_dir
from hashtag.runtime.cli import main
from hashtag.runtime.errors import ConfigError
from hashtag.runtime.settings import Settings, settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "models", "train", "export", "bot", "serve", "tag", "benchmarks")
SETTINGS_MODULE = ROOT / "runtime" / "settings.py"
TOKEN = "123456:ABCdef_ghi-jkl"
SECRET = "webhook-secret_1"


def test_every_variable_is_read_into_its_field(tmp_path: Path) -> None:
    env = {"HASHTAG_MODELS": str(tmp_path / "bundle"), "HASHTAG_CACHE": f" {tmp_path / 'cache'} ",
           "HASHTAG_PYPI_INDEX": "http://127.0.0.1:9/simple/", "HASHTAG_KERAS_WEIGHTS_URL": "https://mirror.example",
           "HASHTAG_TAGGER_URL": "http://tagger:8000", "TELEGRAM_BOT_TOKEN": f"{TOKEN}\n",
           "TELEGRAM_API_URL": "http://127.0.0.1:8081", "TELEGRAM_WEBHOOK_SECRET": SECRET}
    got = Settings.from_environ(env)
    assert got == Settings(bundle=tmp_path / "bundle", cache=tmp_path / "cache",
                           pypi_index="http://127.0.0.1:9/simple/", keras_weights_url="https://mirror.example",
                           tagger_url="http://tagger:8000", bot_token=TOKEN, bot_api_url="http://127.0.0.1:8081",
                           webhook_secret=SECRET)


def test_unset_and_blank_variables_give_the_defaults() -> None:
    blank = Settings.from_environ({"HASHTAG_MODELS": "", "HASHTAG_CACHE": "  ", "TELEGRAM_BOT_TOKEN": "\n"})
    assert blank == Settings.from_environ({})
    assert blank.bundle == DEFAULT_BUNDLE  # the shipped bundle, not the current folder
    assert blank.cache == Path.home() / ".cache" / "hashtag"
    assert blank.bot_token is None and blank.pypi_index is None


@pytest.mark.parametrize("name", ["HASHTAG_PYPI_INDEX", "HASHTAG_KERAS_WEIGHTS_URL"])
def test_a_malformed_url_is_refused_naming_its_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=f"\\${name} must be a URL"):
        Settings.from_environ({name: "mirror.example/simple"})


def test_secrets_stay_out_of_repr_and_str() -> None:
    env = Settings.from_environ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET})
    for text in (repr(env), str(env)):
        assert TOKEN not in text and SECRET not in text and "bot_api_url" in text
    assert env.bot_token == TOKEN and env.webhook_secret == SECRET


def test_built_when_called_so_the_environment_of_the_moment_counts(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "one"))
    assert settings().cache == tmp_path / "one"
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "two"))
    assert cache_dir("weights") == tmp_path / "two" / "weights"


def test_hashtag_models_names_the_default_bundle(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHTAG_MODELS", str(tiny_bundle))
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    assert f"bundle: {tiny_bundle}\n" in result.stdout
    monkeypatch.setenv("HASHTAG_PYPI_INDEX", "not a url")
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 1 and "$HASHTAG_PYPI_INDEX must be a URL" in result.stderr


def test_the_bots_option_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHTAG_TAGGER_URL", "http://tagger:8000")  # as if --tagger-url had been given
    result = CliRunner().invoke(main, ["bot", "--bundle", "b"])
    assert result.exit_code == 2 and "--bundle is for models loaded here, not with --tagger-url" in result.output


ENV_NAMES = {f.metadata["env"] for f in fields(Settings)}
SOURCES = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py")) if p != SETTINGS_MODULE]


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_only_the_settings_module_reads_our_variables(path: Path) -> None:
    """Names of our variables appear in code only in runtime/settings.py (others use its constants and fields);
    no click option reads the environment itself (``envvar=``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in ENV_NAMES, f"{path.relative_to(ROOT)} names ${node.value}"
        if isinstance(node, ast.keyword):
            assert node.arg != "envvar", f"{path.relative_to(ROOT)} reads the environment through click"
