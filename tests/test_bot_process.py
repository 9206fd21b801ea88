"""The `hashtag bot` process itself against the loopback fake Bot API: polling, webhook, signals, secrets."""
from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import pytest

from botkit import REPLY_TIMEOUT, START_TIMEOUT, TOKEN, BotProcess, free_port, run_with_bot, wait_started
from fakes.telegram import SECRET_HEADER, FakeBotApi
from hashtag.bot import replies
from hashtag.runtime import Tagger
from tinybundle import make_photo

SECRET = "webhook-secret_42"


def test_bot_process_answers_a_photo_and_stops_on_sigint_after_finishing_it(tiny_bundle: Path, tmp_path: Path) -> None:
    data = make_photo(tmp_path / "p.jpg", seed=2).read_bytes()
    expected = replies.prediction_text(Tagger(tiny_bundle, provider="cpu").predict_one(data))

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        await wait_started(api, bot, "getUpdates")
        first = api.send_photo(5, data)
        assert (await api.reply_to(first, REPLY_TIMEOUT))["text"] == expected
        api.fail("download", 502, "Bad Gateway", times=3)  # beyond the retries: the error handler answers
        failing = api.send_photo(5, data)
        assert (await api.reply_to(failing, REPLY_TIMEOUT))["text"] == replies.INTERNAL_ERROR
        downloads = len(api.calls("download"))
        in_flight = api.send_photo(5, data)
        api.hold_download(in_flight["photo"][-1]["file_id"])  # until the signal is on its way
        await api.wait_for(lambda: len(api.calls("download")) > downloads, REPLY_TIMEOUT)
        bot.proc.send_signal(signal.SIGINT)
        api.release_download(in_flight["photo"][-1]["file_id"])
        assert await bot.wait_exit() == 0, bot.output()
        assert (await api.reply_to(in_flight, 0.1))["text"] == expected  # sent before the process exited

    bot = run_with_bot(tmp_path, ["--bundle", str(tiny_bundle), "--provider", "cpu", "--log-level", "debug"], body)
    output = bot.output()
    assert "getUpdates" in output and "is up (long polling" in output  # debug logs did mention the API URLs
    assert "handling update" in output and "Traceback" in output  # the error handler logged the failure
    assert TOKEN not in output and TOKEN.split(":")[1] not in output


def test_webhook_mode_takes_updates_with_the_secret_and_rejects_others(tiny_bundle: Path, tmp_path: Path) -> None:
    data = make_photo(tmp_path / "p.jpg", seed=1).read_bytes()
    expected = replies.prediction_text(Tagger(tiny_bundle, provider="cpu").predict_one(data))
    port = free_port()
    hook = f"http://127.0.0.1:{port}/telegram-hook"

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        await wait_started(api, bot, "setWebhook")
        assert api.webhook_url == hook
        assert api.calls("setWebhook")[0].params["secret_token"] == SECRET
        msg = api.send_photo(6, data)  # the fake server POSTs it to the webhook with the secret header
        assert (await api.reply_to(msg, REPLY_TIMEOUT))["text"] == expected
        forged = {"update_id": 999, "message": {**msg, "message_id": 4242, "text": "/help"}}
        async with aiohttp.ClientSession() as client:
            for headers in ({SECRET_HEADER: "wrong"}, {}):
                async with client.post(hook, json=forged, headers=headers) as response:
                    assert response.status == 403
        bot.proc.send_signal(signal.SIGTERM)
        assert await bot.wait_exit() == 0, bot.output()
        assert len(api.sent) == 1  # nothing answered the forged update
        assert not api.calls("getUpdates")

    bot = run_with_bot(tmp_path, ["--bundle", str(tiny_bundle), "--provider", "cpu", "--webhook-url", hook,
                                  "--listen", "127.0.0.1", "--port", str(port), "--secret-token", SECRET,
                                  "--log-level", "debug"], body)
    assert "setWebhook" in bot.output()  # PTB logged the call, parameters and all, at debug level
    assert SECRET not in bot.output() and TOKEN not in bot.output()


def test_a_rejected_token_stops_the_process_with_a_clear_error(tiny_bundle: Path, tmp_path: Path) -> None:
    wrong = "987654:another-token-the-server-rejects"

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        assert await bot.wait_exit(START_TIMEOUT) == 1
        assert [r.status for r in api.calls("getMe")] == [401]

    bot = run_with_bot(tmp_path, ["--bundle", str(tiny_bundle), "--provider", "cpu"], body, token=wrong)
    assert "rejected the token" in bot.output()
    assert wrong not in bot.output()


@pytest.mark.parametrize("args, env, message", [
    ([], {}, "no bot token: set TELEGRAM_BOT_TOKEN or pass --token-file"),
    ([], {"TELEGRAM_BOT_TOKEN": "not a token"}, "does not hold a bot token"),
    (["--token-file", "missing.txt"], {}, "cannot read the token file"),
    ([], {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": "ftp://example"}, "--api-url must be an http(s) URL"),
    (["--bundle", "no-such-bundle"], {"TELEGRAM_BOT_TOKEN": TOKEN}, "no model bundle at no-such-bundle"),
])
def test_configuration_errors_exit_1_with_one_line(args: list[str], env: dict[str, str], message: str,
                                                   tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hashtag.runtime.cli import main

    clean = {"TELEGRAM_BOT_TOKEN": None, "TELEGRAM_API_URL": None, **env}
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        result = CliRunner().invoke(main, ["bot", *args], env=clean)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert TOKEN not in result.output


def test_token_file_is_read_and_webhook_options_need_a_webhook_url(tiny_bundle: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hashtag.runtime.cli import main

    result = CliRunner().invoke(main, ["bot", "--secret-token", "abc"], env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert result.exit_code == 2 and "--secret-token needs --webhook-url" in result.output
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")

    async def body(api: FakeBotApi, bot: BotProcess) -> None:
        await wait_started(api, bot, "getUpdates")
        bot.proc.send_signal(signal.SIGTERM)
        assert await bot.wait_exit() == 0, bot.output()

    run_with_bot(tmp_path, ["--token-file", str(token_file), "--bundle", str(tiny_bundle)], body, token="")


def test_a_chats_threshold_survives_a_restart(tiny_bundle: Path, tmp_path: Path) -> None:
    """/threshold 0.3, SIGTERM, start again: the chat still uses 0.3 (default state file, created private)."""
    data = make_photo(tmp_path / "p.jpg", seed=3).read_bytes()
    scores = Tagger(tiny_bundle, provider="cpu").predict_one(data).scores
    at_03 = " ".join("#" + t for t in sorted((t for t in scores if scores[t] >= 0.3), key=lambda t: -scores[t]))
    args = ["--bundle", str(tiny_bundle), "--provider", "cpu"]
    state = tmp_path / "data" / "hashtag" / f"bot-{TOKEN.split(':')[0]}-state.sqlite3"

    async def ask(api: FakeBotApi, text: str) -> str:
        return (await api.answer(api.send_text(12, text), REPLY_TIMEOUT))["text"]

    async def body(api: FakeBotApi, first: BotProcess) -> None:
        await wait_started(api, first, "getUpdates")
        assert "at least 0.30" in await ask(api, "/threshold 0.3")
        first.proc.send_signal(signal.SIGTERM)
        assert await first.wait_exit() == 0, first.output()
        assert state.stat().st_mode & 0o777 == 0o600 and state.parent.stat().st_mode & 0o777 == 0o700
        polls = len(api.calls("getUpdates"))
        second = BotProcess(tmp_path, api.url, args, name="second")
        try:
            await wait_started(api, second, "getUpdates", before=polls)
            assert "at least 0.30" in await ask(api, "/threshold")
            reply = await api.reply_to(api.send_photo(12, data), REPLY_TIMEOUT)
            assert reply["text"].splitlines()[0] == at_03
            second.proc.send_signal(signal.SIGTERM)
            assert await second.wait_exit() == 0, second.output()
        finally:
            second.kill()

    run_with_bot(tmp_path, args, body)


@pytest.mark.parametrize("content, message", [
    (b"\x80\x04\x95 not a database, a truncated pickle", "is corrupt or not a hashtag bot state file"),
    (None, "cannot open the state file"),  # a directory where the file should be
    ("other-db", "is a database of another program"),
])
def test_an_unusable_state_file_stops_the_bot_with_one_line_naming_it(
        tiny_bundle: Path, tmp_path: Path, content: bytes | str | None, message: str) -> None:
    import sqlite3

    from click.testing import CliRunner

    from hashtag.runtime.cli import main

    state = tmp_path / "state.sqlite3"
    if content is None:
        state.mkdir()
    elif content == "other-db":
        with sqlite3.connect(state) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
    else:
        state.write_bytes(content)
    before = state.read_bytes() if state.is_file() else None
    result = CliRunner().invoke(main, ["bot", "--bundle", str(tiny_bundle), "--provider", "cpu",
                                       "--state-file", str(state)], env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert message in line and str(state) in line
    assert (state.read_bytes() if state.is_file() else None) == before  # never wiped
