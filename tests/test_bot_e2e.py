"""End to end in one process: the real PTB Application talking HTTP to the loopback fake Bot API server."""
from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from PIL import Image
from telegram.ext import Application

from fakes.telegram import RESET, FakeBotApi, FloodRules
from hashtag.bot import replies
from hashtag.bot.app import ALLOWED_UPDATES, build_application
from hashtag.bot.config import BotConfig
from hashtag.bot.ratelimit import MAX_RETRY_AFTER_S
from hashtag.bot.tagging import LocalTagger
from hashtag.runtime import Options, Tagger
from tinybundle import make_photo

TOKEN = "123456:TEST-token_s3cret-VALUE"
TEST_TIMEOUT = 120  # every scenario, bot start and stop included; these bound a failing test only
REPLY_TIMEOUT = 30  # well under MAX_RETRY_AFTER_S, which a reply must not wait for
# Telegram's flood limits on a 20x faster clock, on both sides: the bot paces, the fake server enforces.
MESSAGE_INTERVAL_S = 0.05
FAST_FLOOD = FloodRules(message_interval_s=MESSAGE_INTERVAL_S)


@pytest.fixture(scope="module")
def tagger(tiny_bundle: Path) -> Tagger:
    """One tagger for every scenario (sessions are thread-safe and loop-independent)."""
    return Tagger(tiny_bundle, provider="cpu")


@pytest.fixture()
def photo(tmp_path: Path) -> Callable[..., bytes]:
    """JPEG bytes of a synthetic photo for a seed (other formats by suffix)."""

    def make(seed: int, size: tuple[int, int] = (64, 48), suffix: str = "jpg") -> bytes:
        return make_photo(tmp_path / f"photo{seed}-{size[0]}.{suffix}", size=size, seed=seed).read_bytes()

    return make


@asynccontextmanager
async def polling_app(app: Application) -> AsyncIterator[Application]:
    """Run ``app`` with long polling inside this event loop, stopping it as run_polling does."""
    async with app:
        await app.updater.start_polling(timeout=5, allowed_updates=ALLOWED_UPDATES)
        await app.start()
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


@asynccontextmanager
async def bot_and_api(tagger: Tagger) -> AsyncIterator[tuple[FakeBotApi, Application]]:
    """The fake server and a running bot pointed at it."""
    async with FakeBotApi(TOKEN, flood=FAST_FLOOD) as api:
        config = BotConfig(token=TOKEN, models=tagger.bundle.root, api_url=api.url, workers=2,
                           message_interval_s=MESSAGE_INTERVAL_S)
        with ThreadPoolExecutor(config.workers) as executor:
            async with polling_app(build_application(config, LocalTagger(tagger, executor))) as app:
                yield api, app


def scenario(tagger: Tagger, body: Callable[[FakeBotApi], Awaitable[None]]) -> FakeBotApi:
    """Run ``body(api)`` against a fresh bot with an overall timeout; returns the server to inspect."""

    async def main() -> FakeBotApi:
        async with bot_and_api(tagger) as (api, _):
            await body(api)
        return api

    return asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))


def expected_reply(tagger: Tagger, data: bytes, threshold: float | None = None) -> str:
    return replies.prediction_text(tagger.predict_one(data, Options(threshold=threshold)))


def first_line(message: dict[str, Any]) -> str:
    return message["text"].splitlines()[0]


def test_photo_reply_has_the_runtime_hashtags_of_the_largest_size(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    large, thumb = photo(1, size=(96, 72)), photo(4)
    expected = tagger.predict_one(large)
    assert expected.hashtags, "the test photo must get at least one hashtag"

    large_id: list[str] = []

    async def body(api: FakeBotApi) -> None:
        msg = api.send_photo(7, large, size=(96, 72), thumbnail=thumb)
        large_id.append(msg["photo"][-1]["file_id"])
        reply = await api.reply_to(msg, REPLY_TIMEOUT)
        assert first_line(reply) == " ".join(expected.hashtags)
        assert reply["text"] == expected_reply(tagger, large)
        for name in ("vgg16", "inceptionv3", "xception"):
            assert f"\n{name}: " in reply["text"]

    api = scenario(tagger, body)
    assert [r.params["file_id"] for r in api.calls("getFile")] == large_id
    assert len(api.calls("download")) == 1
    actions = api.calls("sendChatAction")
    assert actions and actions[0].params == {"chat_id": 7, "action": "typing"}
    assert api.requests.index(actions[0]) < api.requests.index(api.calls("sendMessage")[0])


def test_image_document_is_tagged(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    png = photo(2, suffix="png")

    async def body(api: FakeBotApi) -> None:
        msg = api.send_document(8, png, "holiday.png", "image/png")
        reply = await api.reply_to(msg, REPLY_TIMEOUT)
        assert reply["text"] == expected_reply(tagger, png)

    api = scenario(tagger, body)
    assert api.calls("download")[0].params["file_path"].endswith(".png")


def test_pdf_is_refused_by_type_without_any_download(tagger: Tagger) -> None:
    async def body(api: FakeBotApi) -> None:
        msg = api.send_document(9, b"%PDF-1.7\n" + b"0" * 2000, "report.pdf", "application/pdf")
        reply = await api.reply_to(msg, REPLY_TIMEOUT)
        assert "PDF document (application/pdf)" in reply["text"]
        assert "report.pdf" in reply["text"]

    api = scenario(tagger, body)
    assert not api.calls("getFile") and not api.calls("download")


@pytest.mark.parametrize("size_in_message", [True, False], ids=["declared-in-message", "only-getFile-knows"])
def test_oversized_image_is_refused_before_download(tagger: Tagger, photo: Callable[..., bytes],
                                                     size_in_message: bool) -> None:
    async def body(api: FakeBotApi) -> None:
        msg = api.send_document(10, photo(3), "huge.jpg", "image/jpeg", declared_size=25 * 1024 * 1024,
                                size_in_message=size_in_message)
        reply = await api.reply_to(msg, REPLY_TIMEOUT)
        assert "up to 20 MB" in reply["text"]
        if size_in_message:
            assert "25 MB" in reply["text"]

    api = scenario(tagger, body)
    assert not api.calls("download")
    assert len(api.calls("getFile")) == (0 if size_in_message else 1)


def test_corrupt_and_truncated_images_get_a_friendly_reply_and_the_bot_goes_on(
        tagger: Tagger, photo: Callable[..., bytes]) -> None:
    good = photo(5, size=(200, 150))

    async def body(api: FakeBotApi) -> None:
        truncated = api.send_document(11, good[: len(good) // 2], "cut.jpg", "image/jpeg")
        garbage = api.send_photo(11, b"this is not a jpeg at all" * 20)
        cut_reply = await api.reply_to(truncated, REPLY_TIMEOUT)
        assert "couldn't read that image (truncated or corrupt" in cut_reply["text"]
        assert "couldn't read that image (not an image" in (await api.reply_to(garbage, REPLY_TIMEOUT))["text"]
        after = api.send_photo(11, good)
        assert (await api.reply_to(after, REPLY_TIMEOUT))["text"] == expected_reply(tagger, good)

    scenario(tagger, body)


def test_twenty_chats_at_once_each_get_their_own_answer(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    images = {chat: photo(chat) for chat in range(100, 120)}

    async def body(api: FakeBotApi) -> None:
        sent = {chat: api.send_photo(chat, data) for chat, data in images.items()}
        answers = await asyncio.gather(*(api.reply_to(m, REPLY_TIMEOUT) for m in sent.values()))
        for (chat, data), answer in zip(images.items(), answers, strict=True):
            assert answer["chat"]["id"] == chat
            assert answer["text"] == expected_reply(tagger, data)

    api = scenario(tagger, body)
    assert len(api.sent) == 20
    assert len({m["text"] for m in api.sent}) > 10  # the photos really differ, so a mix-up would show


def test_one_slow_download_does_not_hold_up_other_chats(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    async def body(api: FakeBotApi) -> None:
        slow = api.send_photo(21, photo(6))
        api.hold_download(slow["photo"][-1]["file_id"])  # until released below: as slow as it takes
        await api.wait_for(lambda: bool(api.calls("download")), REPLY_TIMEOUT)
        fast = api.send_photo(22, photo(7))
        await api.reply_to(fast, REPLY_TIMEOUT)  # times out if the fast chat waits for the slow one
        assert not any(m["chat"]["id"] == 21 for m in api.sent)
        api.release_download(slow["photo"][-1]["file_id"])
        await api.reply_to(slow, REPLY_TIMEOUT)

    scenario(tagger, body)


@pytest.mark.parametrize("method", ["getUpdates", "getFile", "download", "sendMessage"])
def test_a_server_error_once_is_survived_and_the_photo_still_answered(
        tagger: Tagger, photo: Callable[..., bytes], method: str) -> None:
    data = photo(8)

    async def body(api: FakeBotApi) -> None:
        api.fail(method, 500)
        msg = api.send_photo(30, data)
        assert (await api.reply_to(msg, REPLY_TIMEOUT))["text"] == expected_reply(tagger, data)

    api = scenario(tagger, body)
    statuses = [r.status for r in api.calls(method)]
    assert statuses.count(500) == 1 and statuses.index(500) < statuses.index(200, statuses.index(500))


def test_a_persistent_failure_reaches_the_error_handler_which_answers(
        tagger: Tagger, photo: Callable[..., bytes]) -> None:
    async def body(api: FakeBotApi) -> None:
        api.fail("download", 502, "Bad Gateway", times=3)
        failed = api.send_photo(31, photo(9))
        assert (await api.reply_to(failed, REPLY_TIMEOUT))["text"] == replies.INTERNAL_ERROR
        again = api.send_photo(31, photo(9))
        assert (await api.reply_to(again, REPLY_TIMEOUT))["text"] == expected_reply(tagger, photo(9))

    scenario(tagger, body)


def test_album_photos_are_answered_one_by_one(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    async def body(api: FakeBotApi) -> None:
        album = [api.send_photo(40, photo(s), media_group_id="album1") for s in (10, 11, 12)]
        answers = [await api.reply_to(m, REPLY_TIMEOUT) for m in album]
        assert [a["text"] for a in answers] == [expected_reply(tagger, photo(s)) for s in (10, 11, 12)]

    scenario(tagger, body)


def test_commands_and_per_chat_threshold(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    data = photo(13)

    async def ask(api: FakeBotApi, chat: int, text: str) -> str:
        return (await api.answer(api.send_text(chat, text), REPLY_TIMEOUT))["text"]

    async def body(api: FakeBotApi) -> None:
        assert "Send me a photo" in await ask(api, 50, "/start")
        assert "/threshold" in await ask(api, 50, "/help")
        models = await ask(api, 50, "/models")
        here = tagger.models[0].variant.precision  # the runtime's pick for this CPU (tiny files ship int8 and fp32)
        assert all(n in models for n in (f"vgg16 (32×32, {here})", "inceptionv3", "xception"))
        assert "#animal #nature #sea #person" in models
        assert "at least 0.30" in await ask(api, 50, "/threshold 0,3")
        low = (await api.reply_to(api.send_photo(50, data), REPLY_TIMEOUT))["text"]
        scores = tagger.predict_one(data).scores
        assert first_line({"text": low}) == " ".join(
            "#" + t for t in sorted((t for t in scores if scores[t] >= 0.3), key=lambda t: -scores[t]))
        other_chat = (await api.reply_to(api.send_photo(51, data), REPLY_TIMEOUT))["text"]
        assert other_chat == expected_reply(tagger, data)
        assert "tuned" in await ask(api, 50, "/threshold reset")
        assert (await api.reply_to(api.send_photo(50, data), REPLY_TIMEOUT))["text"] == expected_reply(tagger, data)
        assert await ask(api, 50, "/threshold 7") == replies.THRESHOLD_USAGE
        assert await ask(api, 50, "/frobnicate") == replies.UNKNOWN_COMMAND

    scenario(tagger, body)


@pytest.mark.parametrize("kind, words", [("sticker", "a sticker"), ("video", "a video"), ("voice", "a voice message"),
                                         ("animation", "a GIF animation"), ("audio", "an audio file")])
def test_media_that_is_not_a_photo_gets_a_specific_answer(tagger: Tagger, kind: str, words: str) -> None:
    async def body(api: FakeBotApi) -> None:
        reply = await api.reply_to(api.send_media(60, kind), REPLY_TIMEOUT)
        assert reply["text"] == replies.unsupported_media(kind)
        assert words in reply["text"]

    api = scenario(tagger, body)
    assert not api.calls("download")


def test_plain_text_and_unreadable_image_types(tagger: Tagger) -> None:
    async def body(api: FakeBotApi) -> None:
        assert (await api.answer(api.send_text(61, "hello there"), REPLY_TIMEOUT))["text"] == replies.TEXT
        heic = await api.reply_to(api.send_document(61, b"\0" * 100, "IMG_1.HEIC", "image/heic"), REPLY_TIMEOUT)
        assert "HEIC photo (image/heic), which I can't read" in heic["text"]
        zipped = await api.reply_to(api.send_document(61, b"PK\3\4", "photos.zip", "application/zip"), REPLY_TIMEOUT)
        assert "ZIP archive (application/zip)" in zipped["text"]

    api = scenario(tagger, body)
    assert not api.calls("download")


def test_stopping_finishes_a_reply_in_flight(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    data = photo(14)

    async def main() -> FakeBotApi:
        async with FakeBotApi(TOKEN, flood=FAST_FLOOD) as api:
            config = BotConfig(token=TOKEN, models=tagger.bundle.root, api_url=api.url, workers=1,
                               message_interval_s=MESSAGE_INTERVAL_S)
            with ThreadPoolExecutor(1) as executor:
                async with polling_app(build_application(config, LocalTagger(tagger, executor))):
                    msg = api.send_photo(70, data)
                    api.hold_download(msg["photo"][-1]["file_id"])
                    await api.wait_for(lambda: bool(api.calls("download")), REPLY_TIMEOUT)
                    assert not api.sent
                    # The download is let go only once leaving this block has begun to stop the bot (the
                    # callback runs at stop's first wait), so the reply is in flight while the bot stops.
                    asyncio.get_running_loop().call_soon(api.release_download, msg["photo"][-1]["file_id"])
                # stopped: the reply must have gone out before stop() returned
                assert [m["text"] for m in api.sent] == [expected_reply(tagger, data)]
        return api

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT))


def test_inference_runs_off_the_event_loop(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    """While a big image is decoded and tagged in a worker, the loop keeps answering other chats' commands."""
    big = io.BytesIO()
    Image.new("RGB", (6000, 4500), (30, 120, 200)).save(big, "PNG")

    async def body(api: FakeBotApi) -> None:
        heavy = api.send_document(80, big.getvalue(), "big.png", "image/png")
        await api.wait_for(lambda: bool(api.calls("download")), REPLY_TIMEOUT)
        help_reply = await api.answer(api.send_text(81, "/help"), REPLY_TIMEOUT)
        heavy_reply = await api.reply_to(heavy, REPLY_TIMEOUT)
        assert api.sent.index(help_reply) < api.sent.index(heavy_reply)

    scenario(tagger, body)



@pytest.mark.parametrize("method, fault", [
    ("sendMessage", "429"), ("getFile", "429"), ("getFile", "500"), ("getFile", "502"), ("download", "503"),
    ("getFile", "reset"), ("download", "reset"), ("sendMessage", "reset"),
])
def test_flood_control_and_transient_failures_lose_no_reply_and_send_none_twice(
        tagger: Tagger, photo: Callable[..., bytes], method: str, fault: str) -> None:
    images = [photo(s) for s in (20, 21, 22)]
    status = RESET if fault == "reset" else int(fault)
    sent: list[dict[str, Any]] = []

    async def body(api: FakeBotApi) -> None:
        if fault == "reset":
            api.reset(method)
        elif fault == "429":
            api.fail(method, retry_after=1)
        else:
            api.fail(method, status)
        sent.extend(api.send_photo(90, data) for data in images)
        for message, data in zip(sent, images, strict=True):
            assert (await api.reply_to(message, REPLY_TIMEOUT))["text"] == expected_reply(tagger, data)

    api = scenario(tagger, body)  # stopped: every call in flight has finished
    assert [len(api.replies_to(m)) for m in sent] == [1, 1, 1]
    assert len(api.sent) == 3  # no apology either
    calls = api.calls(method)
    failed = next(i for i, r in enumerate(calls) if r.status == status)
    retried = next(r for r in calls[failed + 1:] if r.status == 200)
    if status == 429:  # PTB's rate limiter waited retry_after before asking again
        assert retried.at - calls[failed].at >= 1.0

def test_a_reply_delivered_before_the_connection_dropped_is_sent_again(
        tagger: Tagger, photo: Callable[..., bytes]) -> None:
    """The documented limit of exactly-once: the Bot API has no idempotency key, so a retried sendMessage
    whose first attempt had in fact been delivered duplicates the reply (never loses it)."""
    data = photo(23)
    sent: list[dict[str, Any]] = []

    async def body(api: FakeBotApi) -> None:
        api.reset("sendMessage", after_effect=True)
        sent.append(api.send_photo(91, data))
        await api.wait_for(lambda: len(api.replies_to(sent[0])) == 2, REPLY_TIMEOUT)

    api = scenario(tagger, body)
    assert [m["text"] for m in api.replies_to(sent[0])] == [expected_reply(tagger, data)] * 2
    assert [r.status for r in api.calls("sendMessage")] == [RESET, 200]


def test_a_burst_from_one_chat_does_not_hold_up_another_chat_and_keeps_to_its_pace(
        tagger: Tagger, photo: Callable[..., bytes]) -> None:
    """Chat A sends 30 photos at once and the download of its sixth is held: chat B's photo, sent then, is
    answered while A still has five replies, so B did not wait behind A's burst, whatever the machine's speed.

    The fake server enforces Telegram's per-chat limit (429 past it), so the bot's pacing is what keeps
    A's replies flowing without a single 429.
    """
    a, b = 200, 201
    burst_photos = [photo(s, size=(80, 60)) for s in range(100, 130)]
    b_photo = photo(130)
    burst: list[dict[str, Any]] = []
    b_sent: list[dict[str, Any]] = []

    async def body(api: FakeBotApi) -> None:
        def answered_in(chat: int) -> int:
            return sum(m["chat"]["id"] == chat for m in api.sent)

        burst.extend(api.send_photo(a, data) for data in burst_photos)
        held = burst[5]["photo"][-1]["file_id"]
        api.hold_download(held)  # A's updates are handled in order: A stops at five replies until released
        await api.wait_for(lambda: answered_in(a) == 5 and len(api.calls("download")) >= 6, REPLY_TIMEOUT)
        b_sent.append(api.send_photo(b, b_photo))
        reply = await api.reply_to(b_sent[0], REPLY_TIMEOUT)
        assert reply["text"] == expected_reply(tagger, b_photo)
        assert answered_in(a) == 5
        api.release_download(held)
        for message in burst:
            await api.reply_to(message, REPLY_TIMEOUT)

    api = scenario(tagger, body)
    assert [len(api.replies_to(m)) for m in burst] == [1] * 30
    assert [m["text"] for m in api.sent if m["chat"]["id"] == a] == [expected_reply(tagger, d) for d in burst_photos]
    fetched = [r.params["file_id"] for r in api.calls("getFile")]
    assert fetched.index(b_sent[0]["photo"][-1]["file_id"]) < fetched.index(burst[6]["photo"][-1]["file_id"])
    sends = [r for r in api.calls("sendMessage") if r.params["chat_id"] == a]
    assert all(r.status == 200 for r in sends), "the bot went past the chat's flood limit"


def test_a_flood_wait_over_the_cap_is_not_waited_for(tagger: Tagger, photo: Callable[..., bytes]) -> None:
    """Telegram asking for more than MAX_RETRY_AFTER_S: the reply fails at once (logged, the user told)."""
    data = photo(24)

    async def body(api: FakeBotApi) -> None:
        api.fail("sendMessage", retry_after=int(MAX_RETRY_AFTER_S) + 1)
        answer = await api.reply_to(api.send_photo(92, data), REPLY_TIMEOUT)  # well before retry_after
        assert answer["text"] == replies.INTERNAL_ERROR
        assert (await api.reply_to(api.send_photo(92, data), REPLY_TIMEOUT))["text"] == expected_reply(tagger, data)

    api = scenario(tagger, body)
    assert [r.status for r in api.calls("sendMessage")] == [429, 200, 200]
