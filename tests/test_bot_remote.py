"""`hashtag bot --tagger-url`: photos tagged by a real `hashtag serve` on loopback get the in-process replies."""
from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web

from botkit import REPLY_TIMEOUT, START_TIMEOUT, BotProcess, free_port, run_with_bot, wait_started
from fakes.telegram import FakeBotApi
from hashtag.bot import replies
from hashtag.bot.remote import RemoteTagger
from hashtag.runtime.prediction import Options
from hashtag.bot.tagging import LocalTagger, TaggerUnavailable
from hashtag.runtime import Tagger
from hashtag.runtime.errors import ImageError
from servekit import ServeProcess
from tinybundle import make_photo

KEY = "tagger-key_for-tests-only-42"


@pytest.fixture(scope="module")
def serve(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path]]:
    """`hashtag serve` on the tiny bundle with an API key; yields it and the key file."""
    tmp = tmp_path_factory.mktemp("serve")
    key_file = tmp / "tagger.key"
    key_file.write_text(KEY + "\n")
    server = ServeProcess(tmp, ["--bundle", str(tiny_bundle), "--provider", "cpu", "--workers", "1",
                                "--api-key-file", str(key_file), "--log-level", "warning"])
    try:
        server.wait_ready()
        yield server, key_file
    finally:
        server.stop()


def unreadable_reason(tagger: Tagger, data: bytes) -> str:
    with pytest.raises(ImageError) as info:
        tagger.predict_one(data)
    return info.value.reason


def test_replies_through_hashtag_serve_are_the_in_process_replies(
        serve: tuple[ServeProcess, Path], tiny_bundle: Path, tmp_path: Path) -> None:
    server, key_file = serve
    local = Tagger(tiny_bundle, provider="cpu")
    jpeg = make_photo(tmp_path / "a.jpg", size=(96, 72), seed=5).read_bytes()
    png = make_photo(tmp_path / "b.png", size=(64, 48), seed=6).read_bytes()
    cut = jpeg[: len(jpeg) // 2]
    with ThreadPoolExecutor(1) as executor:
        models = replies.models_text(asyncio.run(LocalTagger(local, executor).ensemble()))
    expected = {
        "photo": replies.prediction_text(local.predict_one(jpeg)),
        "png": replies.prediction_text(local.predict_one(png)),
        "cut": replies.unreadable(unreadable_reason(local, cut)),
        "garbage": replies.unreadable(unreadable_reason(local, b"not an image" * 10)),
        "threshold": replies.prediction_text(local.predict_one(jpeg, Options(threshold=0.3))),
    }
    got: dict[str, str] = {}

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        await wait_started(api, bot, "getUpdates")
        sent = {  # one chat each: Telegram's one message per second per chat does not slow the test
            "photo": api.send_photo(1, jpeg, size=(96, 72)),
            "png": api.send_document(2, png, "b.png", "image/png"),
            "cut": api.send_document(3, cut, "cut.jpg", "image/jpeg"),
            "garbage": api.send_photo(4, b"not an image" * 10),
        }
        for name, message in sent.items():
            got[name] = (await api.reply_to(message, REPLY_TIMEOUT))["text"]
        got["models"] = (await api.answer(api.send_text(5, "/models"), REPLY_TIMEOUT))["text"]
        await api.answer(api.send_text(6, "/threshold 0.3"), REPLY_TIMEOUT)
        got["threshold"] = (await api.reply_to(api.send_photo(6, jpeg, size=(96, 72)), REPLY_TIMEOUT))["text"]
        bot.proc.send_signal(signal.SIGTERM)
        assert await bot.wait_exit() == 0, bot.output()

    bot = run_with_bot(tmp_path, ["--tagger-url", server.url, "--tagger-key-file", str(key_file),
                                  "--state-file", str(tmp_path / "state.sqlite3"), "--log-level", "debug"], body)
    assert got == {**expected, "models": models}
    assert f"tagging with hashtag serve at {server.url}" in bot.output()
    assert KEY not in bot.output()


def test_an_unreachable_tagger_gets_a_clear_reply_after_retries(tmp_path: Path, tiny_bundle: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    data = make_photo(tmp_path / "p.jpg", seed=7).read_bytes()

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        await wait_started(api, bot, "getUpdates")  # it starts anyway: the tagger may come up later
        assert (await api.reply_to(api.send_photo(8, data), REPLY_TIMEOUT))["text"] == replies.TAGGER_UNAVAILABLE
        assert (await api.answer(api.send_text(9, "/models"), REPLY_TIMEOUT))["text"] == replies.TAGGER_UNAVAILABLE
        bot.proc.send_signal(signal.SIGTERM)
        assert await bot.wait_exit() == 0, bot.output()

    bot = run_with_bot(tmp_path, ["--tagger-url", nowhere, "--state-file", str(tmp_path / "s.sqlite3")], body)
    output = bot.output()
    assert f"hashtag serve at {nowhere} did not answer POST /v1/tags (ConnectError" in output
    assert output.count("retry 1 of 2") >= 2 and output.count("retry 2 of 2") >= 2  # start-up and the photo


def test_a_refused_api_key_stops_the_bot_with_one_line(serve: tuple[ServeProcess, Path], tmp_path: Path) -> None:
    server, _ = serve
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key")

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        assert await bot.wait_exit(START_TIMEOUT) == 1

    bot = run_with_bot(tmp_path, ["--tagger-url", server.url, "--tagger-key-file", str(wrong),
                                  "--state-file", str(tmp_path / "s.sqlite3")], body)
    refused = f"Error: hashtag serve at {server.url} refused the API key (--tagger-key-file): wrong API key"
    assert refused in bot.output()
    assert "not-the-key" not in bot.output()


@pytest.mark.parametrize("args, message", [
    (["--tagger-url", "http://x", "--bundle", "b"], "--bundle is for models loaded here, not with --tagger-url"),
    (["--tagger-key-file", "k"], "--tagger-key-file needs --tagger-url"),
])
def test_tagger_url_options_are_checked(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from hashtag.runtime.cli import main

    result = CliRunner().invoke(main, ["bot", *args], env={"TELEGRAM_BOT_TOKEN": "1:x"})
    assert result.exit_code == 2 and message in result.output


def test_busy_and_failing_answers_are_retried_with_backoff(tiny_bundle: Path, tmp_path: Path) -> None:
    """A stand-in for `hashtag serve` answers 503 (Retry-After: 1), then 502, then the record."""
    data = make_photo(tmp_path / "p.jpg", seed=8).read_bytes()
    local = Tagger(tiny_bundle, provider="cpu")
    prediction = local.predict_one(data)
    statuses = [503, 502, 200]
    seen: list[tuple[float, str, bytes]] = []

    async def tags(request: web.Request) -> web.Response:
        seen.append((time.monotonic(), request.headers["Content-Type"], await request.read()))
        status = statuses[len(seen) - 1]
        if status == 200:
            return web.json_response({"results": [prediction.to_json()]})
        headers = {"Retry-After": "1"} if status == 503 else {}
        return web.json_response({"error": "busy"}, status=status, headers=headers)

    async def models(request: web.Request) -> web.Response:
        xception = {"name": "xception", "input_size": 299, "running": {"precision": "int8"}}
        return web.json_response({"served": ["xception"], "tags": list(local.bundle.tags), "models": [xception]})

    async def main() -> tuple[Any, Any]:
        app = web.Application()
        app.router.add_post("/v1/tags", tags)
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        tagger = RemoteTagger(f"http://127.0.0.1:{runner.addresses[0][1]}/")
        with pytest.raises(TaggerUnavailable, match="not started"):
            await tagger.predict(data, "image/jpeg", Options())
        await tagger.start()
        try:
            return await tagger.predict(data, "image/png", Options()), await tagger.ensemble()
        finally:
            await tagger.close()
            await runner.cleanup()

    got, ensemble = asyncio.run(asyncio.wait_for(main(), 30))
    assert got == prediction
    assert [(ctype, body == data) for _, ctype, body in seen] == [("image/png", True)] * 3
    assert seen[1][0] - seen[0][0] >= 1.0 and seen[2][0] - seen[1][0] >= 1.0  # Retry-After, then 1 s backoff
    assert [(m.name, m.input_size, m.precision) for m in ensemble.models] == [("xception", 299, "int8")]
