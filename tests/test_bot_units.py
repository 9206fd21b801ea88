"""The bot's pure parts: configuration, token handling, log redaction and reply texts."""
from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from pathlib import Path

import pytest

from hashtag.bot import replies
from hashtag.bot.config import BotConfig, WebhookConfig, default_state_file, read_token
from hashtag.runtime.errors import ConfigError
from hashtag.bot.handlers import image_media_type, is_image_document
from hashtag.bot.logs import REDACTED, RedactingFormatter
from hashtag.bot.remote import query
from hashtag.bot.state import ChatSettings
from hashtag.runtime.errors import HashtagError, ImageError
from hashtag.runtime.contract import RAW_UPLOAD_NAME, ModelPrediction, Prediction, error_record
from hashtag.runtime.settings import Settings
from hashtag.runtime.prediction import Options

TOKEN = "123456:ABC-def_ghiJKL"


def test_config_builds_ptb_urls_and_hides_the_token(tmp_path: Path) -> None:
    config = BotConfig(token=TOKEN, models=tmp_path, api_url="http://127.0.0.1:8081/", workers=2)
    assert config.base_url == "http://127.0.0.1:8081/bot"
    assert config.base_file_url == "http://127.0.0.1:8081/file/bot"
    assert TOKEN not in repr(config)
    hook = WebhookConfig("https://example.org/tg/hook", secret_token="s3cret")
    assert hook.url_path == "tg/hook" and "s3cret" not in repr(hook)
    assert BotConfig(token=TOKEN, models=tmp_path, webhook=hook).secrets == (TOKEN, "s3cret")


@pytest.mark.parametrize("kwargs, message", [
    ({"token": "nocolon"}, "bot token must look like"),
    ({"api_url": "api.telegram.org"}, "--api-url must be an http(s) URL"),
    ({"api_url": "https://x.org/?a=1"}, "--api-url must be an http(s) URL"),
    ({"provider": "tpu"}, "unknown provider 'tpu'"),
    ({"workers": 0}, "--workers must be at least 1"),
    ({"threads": 0}, "--threads must be at least 1"),
])
def test_config_rejects_bad_values(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        BotConfig(**{"token": TOKEN, "models": tmp_path, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "ftp://x"}, "--webhook-url must be an http"),
    ({"port": 0}, "--port must be in 1..65535"),
    ({"secret_token": "has space"}, "--secret-token must be 1-256 characters"),
])
def test_webhook_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        WebhookConfig(**{"url": "https://example.org/hook", **kwargs})


def test_read_token_prefers_the_file_and_validates(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    assert read_token(token_file, Settings.from_environ({"TELEGRAM_BOT_TOKEN": "9:other"})) == TOKEN
    assert read_token(None, Settings.from_environ({"TELEGRAM_BOT_TOKEN": f" {TOKEN}\n"})) == TOKEN
    with pytest.raises(ConfigError, match="no bot token"):
        read_token(None, Settings.from_environ({"TELEGRAM_BOT_TOKEN": "  "}))
    token_file.write_text("not a token")
    with pytest.raises(ConfigError, match="does not hold a bot token") as info:
        read_token(token_file, Settings())
    assert "not a token" not in str(info.value)


def test_formatter_redacts_messages_arguments_and_tracebacks() -> None:
    formatter = RedactingFormatter([TOKEN, "hook-secret"])
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot{TOKEN}/getMe failed")
    except RuntimeError as exc:
        record = logging.LogRecord("httpx", logging.ERROR, __file__, 1, "request %s with %s", (
            f"/file/bot{TOKEN}/photos/x.jpg", "hook-secret"), (type(exc), exc, exc.__traceback__))
    text = formatter.format(record)
    assert TOKEN not in text and "hook-secret" not in text
    assert text.count(REDACTED) >= 3 and "RuntimeError" in text
    quoted = formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "123456%3AABC-def_ghiJKL", (), None))
    assert quoted.endswith(REDACTED)


def prediction() -> Prediction:
    models = {
        "vgg16": ModelPrediction({"sea": 0.91, "beach": 0.62, "dog": 0.1}, ["#sea", "#beach"]),
        "xception": ModelPrediction({"sea": 0.8, "beach": 0.35, "dog": 0.2}, ["#sea"]),
    }
    return Prediction("img", {"sea": 0.855, "beach": 0.485, "dog": 0.15}, ["#sea", "#beach"], models)


def test_prediction_text_puts_copyable_hashtags_first_then_each_model() -> None:
    assert replies.prediction_text(prediction()).splitlines() == [
        "#sea #beach", "", "vgg16: #sea 0.91, #beach 0.62", "xception: #sea 0.80"]


def test_prediction_text_with_nothing_confident() -> None:
    models = {"vgg16": ModelPrediction({"sea": 0.91, "dog": 0.1}, [])}
    lines = replies.prediction_text(Prediction("img", {"sea": 0.855, "dog": 0.15}, [], models)).splitlines()
    assert lines[0] == "No hashtag is confident enough for this photo (closest: #sea 0.85)."
    assert lines[2] == "vgg16: nothing above threshold"


def test_a_chats_options_travel_as_the_servers_query_parameters() -> None:
    assert query(Options()) == {}
    assert query(Options(models=("vgg16", "xception"), threshold=0.3, top_k=2)) == {
        "threshold": "0.3", "top_k": "2", "models": "vgg16,xception"}


def test_parse_threshold() -> None:
    assert replies.parse_threshold(["0.25"]) == 0.25
    assert replies.parse_threshold(["0,4"]) == 0.4
    assert replies.parse_threshold(["reset"]) is None
    for bad in (["1.5"], ["x"], [], ["0.1", "0.2"]):
        with pytest.raises(ValueError, match="Usage"):
            replies.parse_threshold(bad)


def test_refusal_texts_name_what_was_received() -> None:
    assert "a PDF document (application/pdf)" in replies.not_an_image("application/pdf", "a.pdf")
    assert "a file of type application/x-foo" in replies.not_an_image("application/x-foo", None)
    assert "a file with no declared type" in replies.not_an_image(None, "notes")
    assert "which I can't read" in replies.not_an_image("image/heic", "IMG.HEIC")
    assert replies.too_big(25 * 1024 * 1024, 20 * 1024 * 1024).startswith(
        "This file is 25 MB; bots can only download files up to 20 MB")
    assert replies.human_size(1536 * 1024) == "1.5 MB" and replies.human_size(2048) == "2 KB"


@pytest.mark.parametrize("mime, name, expected", [
    ("image/jpeg", "x.bin", True), ("IMAGE/PNG", None, True), ("application/pdf", "x.jpg", False),
    ("image/heic", "x.heic", False), (None, "photo.JPG", True), (None, "doc.pdf", False), (None, None, False),
])
def test_is_image_document(mime: str | None, name: str | None, expected: bool) -> None:
    assert is_image_document(mime, name) is expected


def test_config_errors_are_hashtag_errors() -> None:
    with pytest.raises(HashtagError, match="no bot token"):
        read_token(None, Settings())


def test_default_state_file_is_per_bot_in_the_users_data_directory(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_state_file(TOKEN) == tmp_path / "hashtag" / "bot-123456-state.sqlite3"


def test_chat_settings_are_committed_per_chat_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.sqlite3"

    async def write() -> None:
        settings = ChatSettings(path)
        assert await settings.get_chat_data() == {}
        await settings.update_chat_data(5, {"threshold": 0.3})
        await settings.update_chat_data(6, {"threshold": 0.5})
        await settings.update_chat_data(7, {})  # default settings: no row
        await settings.update_chat_data(6, {})  # /threshold reset
        # no flush: each change is committed when made

    async def read() -> dict:
        settings = ChatSettings(path)
        try:
            return await settings.get_chat_data()
        finally:
            await settings.flush()

    asyncio.run(write())
    assert asyncio.run(read()) == {5: {"threshold": 0.3}}
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT chat_id, data FROM chat_data").fetchall() == [(5, '{"threshold": 0.3}')]


def test_chat_settings_refuse_a_row_that_is_not_settings(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    asyncio.run(ChatSettings(path).flush())
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO chat_data VALUES (1, '[1, 2]')")
    with pytest.raises(ConfigError, match=re.escape(f"the state file {path} is corrupt")):
        ChatSettings(path)


def test_a_served_record_is_the_prediction_it_was_made_from() -> None:
    assert Prediction.from_json(prediction().to_json()) == prediction()
    with pytest.raises(ImageError) as info:
        Prediction.from_json(error_record(RAW_UPLOAD_NAME, "not an image (cannot identify image file)"))
    assert info.value.reason == "not an image (cannot identify image file)"
    with pytest.raises(ValueError, match="not a prediction record"):
        Prediction.from_json({"image": "x", "scores": {}})


@pytest.mark.parametrize("mime, name, expected", [
    ("image/PNG", "x.jpg", "image/png"), (None, "photo.webp", "image/webp"), (None, "photo.tif", "image/tiff"),
    (None, None, "image/jpeg"),
])
def test_image_media_type(mime: str | None, name: str | None, expected: str) -> None:
    assert image_media_type(mime, name) == expected


def test_a_tagger_url_and_its_key(tmp_path: Path) -> None:
    config = BotConfig(token=TOKEN, tagger_url="http://tagger:8000/", tagger_key="k3y")
    assert config.secrets == (TOKEN, "k3y") and "k3y" not in repr(config)
    for kwargs, message in [({}, "either with a model bundle or with a tagger URL"),
                            ({"models": tmp_path, "tagger_url": "http://t"}, "not both or neither"),
                            ({"tagger_url": "tagger:8000"}, "--tagger-url must be the http(s) URL"),
                            ({"models": tmp_path, "tagger_key": "k"}, "a tagger API key needs a tagger URL")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            BotConfig(token=TOKEN, **kwargs)
