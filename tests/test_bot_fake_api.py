"""The fake Bot API server speaks Telegram's protocol as python-telegram-bot's own Bot client sees it."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

import pytest
from telegram import Bot
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter

from fakes.telegram import RESET, TELEGRAM_FLOOD, FakeBotApi, FloodRules

TOKEN = "42:FAKE-api_token"
TEST_TIMEOUT = 90  # bounds a failing test only; nothing here waits for the clock to pass a mark
WAKE_TIMEOUT = 30  # a long poll woken by an update must return well within its own (longer) timeout
LONG_POLL_S = 60


def with_bot(body: Callable[[FakeBotApi, Bot], Awaitable[None]], token: str = TOKEN,
             flood: FloodRules | None = TELEGRAM_FLOOD, clock: Callable[[], float] = time.monotonic) -> FakeBotApi:
    async def main() -> FakeBotApi:
        async with FakeBotApi(TOKEN, flood=flood, clock=clock) as api:
            bot = Bot(token, base_url=f"{api.url}/bot", base_file_url=f"{api.url}/file/bot")
            async with bot:
                await body(api, bot)
        return api

    return asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))


def test_get_me_and_a_wrong_token() -> None:
    async def body(api: FakeBotApi, bot: Bot) -> None:
        assert bot.username == "hashtag_test_bot" and bot.id == 42

    with_bot(body)

    async def never(api: FakeBotApi, bot: Bot) -> None:
        raise AssertionError("initialize must fail")

    with pytest.raises(InvalidToken):
        with_bot(never, token="42:wrong")


def test_get_updates_long_polls_and_confirms_by_offset() -> None:
    async def body(api: FakeBotApi, bot: Bot) -> None:
        started = time.monotonic()
        assert await bot.get_updates(timeout=1) == ()
        assert time.monotonic() - started >= 1  # held for its timeout (a slow machine only makes it longer)
        poll = asyncio.create_task(bot.get_updates(timeout=LONG_POLL_S))
        await api.wait_for(lambda: any(r.params.get("timeout") == LONG_POLL_S for r in api.calls("getUpdates")),
                           WAKE_TIMEOUT)
        api.send_text(1, "hi")  # while the server holds the poll
        (update,) = await asyncio.wait_for(poll, WAKE_TIMEOUT)  # woken by the update, not by its timeout
        assert update.message.text == "hi"
        api.send_text(1, "again")
        assert [u.message.text for u in await bot.get_updates(timeout=0)] == ["hi", "again"]  # not confirmed yet
        (last,) = await bot.get_updates(offset=update.update_id + 1, timeout=0)
        assert last.message.text == "again" and api.pending_updates == 1
        assert await bot.get_updates(offset=last.update_id + 1, timeout=0) == ()
        assert api.pending_updates == 0

    with_bot(body)


def test_files_errors_and_faults() -> None:
    async def body(api: FakeBotApi, bot: Bot) -> None:
        small = api.add_file(b"abc")
        tg_file = await bot.get_file(small.file_id)
        assert tg_file.file_size == 3 and tg_file.file_path.startswith(f"{api.url}/file/bot{TOKEN}/photos/")
        assert bytes(await tg_file.download_as_bytearray()) == b"abc"
        api.hold_download(small.file_id)
        held = asyncio.create_task(tg_file.download_as_bytearray())
        await api.wait_for(lambda: len(api.calls("download")) == 2, WAKE_TIMEOUT)
        assert not held.done() and api.calls("download")[1].status == 0  # unanswered until released
        api.release_download(small.file_id)
        assert bytes(await asyncio.wait_for(held, WAKE_TIMEOUT)) == b"abc"
        big = api.add_file(b"x", declared_size=20 * 1024 * 1024 + 1)
        with pytest.raises(BadRequest, match="(?i)file is too big"):
            await bot.get_file(big.file_id)
        with pytest.raises(BadRequest, match="(?i)invalid file_id"):
            await bot.get_file("nope")
        api.fail("sendMessage", 500)
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(1, "x")
        with pytest.raises(BadRequest, match="(?i)message to be replied not found"):
            await bot.send_message(1, "x", reply_to_message_id=12345)
        assert (await bot.send_message(1, "ok")).text == "ok"
        await bot.set_webhook("http://127.0.0.1:9/none")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)
        await bot.delete_webhook()

    api = with_bot(body)
    assert [r.status for r in api.calls("sendMessage")] == [500, 400, 200]
    assert api.calls("getFile")[1].status == 400


def test_flood_control_per_chat_and_injected_429s_and_resets() -> None:
    now = [0.0]  # flood control's clock, moved by hand: what it allows does not depend on the machine's speed

    async def body(api: FakeBotApi, bot: Bot) -> None:
        for i in range(3):  # a short burst is tolerated
            await bot.send_message(1, f"m{i}")
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(1, "one too many")
        assert "Retry in 1 seconds" in str(info.value)
        await bot.send_message(2, "another chat is not limited")
        now[0] += 0.25
        with pytest.raises(RetryAfter):
            await bot.send_message(1, "half an interval later")
        now[0] += 0.25  # a message more is allowed every 0.5 s
        await bot.send_message(1, "paced")
        api.fail("getFile", retry_after=7)
        with pytest.raises(RetryAfter, match="Retry in 7 seconds"):
            await bot.get_file(api.add_file(b"abc").file_id)
        api.reset("sendMessage")
        with pytest.raises(NetworkError, match="httpx.ReadError"):
            await bot.send_message(3, "lost")
        api.reset("sendMessage", after_effect=True)
        with pytest.raises(NetworkError, match="httpx.ReadError"):
            await bot.send_message(3, "delivered, but the answer was lost")

    api = with_bot(body, flood=FloodRules(message_interval_s=0.5), clock=lambda: now[0])
    assert [m["text"] for m in api.sent] == ["m0", "m1", "m2", "another chat is not limited", "paced",
                                             "delivered, but the answer was lost"]
    assert [r.status for r in api.calls("sendMessage")] == [200, 200, 200, 429, 200, 429, 200, RESET, RESET]
