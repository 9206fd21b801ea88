"""The bot's update handlers: download a photo, tag it off the event loop, reply to that message."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from telegram import Message, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, TelegramError
from telegram.ext import ContextTypes

from hashtag.bot import replies
from hashtag.bot.tagging import PhotoTagger, TaggerUnavailable
from hashtag.runtime.errors import ImageError
from hashtag.runtime.images import IMAGE_SUFFIXES
from hashtag.runtime.prediction import Options

log = logging.getLogger(__name__)
T = TypeVar("T")
Context = ContextTypes.DEFAULT_TYPE
TYPING_REFRESH_S = 4.0  # Telegram shows a chat action for 5 s
RETRIES = 3
RETRY_DELAY_S = 0.5
THRESHOLD_KEY = "threshold"
FAST_KEY = "fast"
PHOTO_TYPE = "image/jpeg"  # Telegram sends compressed photos as JPEG


async def with_retries(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Run a Bot API call, retrying transient failures (5xx, timeouts, dropped connections) with backoff.

    BadRequest (our own mistake or the user's file) and Forbidden are not transient and are raised at once.
    """
    for attempt in range(1, RETRIES + 1):
        try:
            return await call()
        except BadRequest:
            raise
        except NetworkError as exc:
            if attempt == RETRIES:
                raise
            log.warning("%s failed (%s); retry %d of %d", what, exc, attempt, RETRIES - 1)
            await asyncio.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def typing_action(message: Message) -> AsyncIterator[None]:
    """Show 'typing…' in the chat while the body runs, refreshed before Telegram hides it."""

    async def keep_typing() -> None:
        while True:
            try:
                await message.get_bot().send_chat_action(message.chat_id, ChatAction.TYPING)
            except TelegramError as exc:  # cosmetic: never fail a reply because of it
                log.debug("chat action failed: %s", exc)
            await asyncio.sleep(TYPING_REFRESH_S)

    task = asyncio.create_task(keep_typing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def is_image_document(mime_type: str | None, file_name: str | None) -> bool:
    """Whether a document is an image the runtime decodes, by MIME type, else by file name."""
    if mime_type:
        return mime_type.lower() in replies.IMAGE_MIME_TYPES
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if file_name and "." in file_name else ""
    return suffix in IMAGE_SUFFIXES


def image_media_type(mime_type: str | None, file_name: str | None) -> str:
    """The media type of an image document: as declared, else from its file name."""
    return (mime_type or mimetypes.guess_type(file_name or "")[0] or PHOTO_TYPE).lower()


class Handlers:
    """Handlers bound to one tagger (shared by every chat)."""

    def __init__(self, tagger: PhotoTagger, download_limit: int, fast: bool = False) -> None:
        self.tagger = tagger
        self.download_limit = download_limit
        self.fast = fast  # whether chats that never sent /fast use the fast model

    async def start(self, update: Update, context: Context) -> None:
        """Greet and explain what to send."""
        await update.effective_message.reply_text(replies.start_text(self.download_limit))

    async def help(self, update: Update, context: Context) -> None:
        """Explain what to send and the commands."""
        await update.effective_message.reply_text(replies.help_text(self.download_limit))

    async def models(self, update: Update, context: Context) -> None:
        """List the models and the tags they know."""
        try:
            text = replies.models_text(await self.tagger.ensemble())
        except TaggerUnavailable:
            text = replies.TAGGER_UNAVAILABLE
        await update.effective_message.reply_text(text)

    async def threshold(self, update: Update, context: Context) -> None:
        """Show or set this chat's score threshold."""
        message = update.effective_message
        if context.args:
            try:
                value = replies.parse_threshold(context.args)
            except ValueError as exc:
                await message.reply_text(str(exc))
                return
            if value is None:
                context.chat_data.pop(THRESHOLD_KEY, None)
            else:
                context.chat_data[THRESHOLD_KEY] = value
        await message.reply_text(replies.threshold_text(context.chat_data.get(THRESHOLD_KEY)))

    async def fast_command(self, update: Update, context: Context) -> None:
        """Show or set whether this chat's photos go to the fast model."""
        message = update.effective_message
        if context.args:
            try:
                context.chat_data[FAST_KEY] = replies.parse_fast(context.args)
            except ValueError as exc:
                await message.reply_text(str(exc))
                return
        if not context.chat_data.get(FAST_KEY, self.fast):
            await message.reply_text(replies.fast_text(False))
            return
        try:
            has_fast = (await self.tagger.ensemble()).fast is not None
        except TaggerUnavailable:
            await message.reply_text(replies.TAGGER_UNAVAILABLE)
            return
        await message.reply_text(replies.fast_text(True) if has_fast else replies.NO_FAST_MODEL)

    async def _options(self, context: Context) -> Options:
        """This chat's Options: its threshold, and the fast model when the chat (or the bot's default) asks."""
        models = None
        if context.chat_data.get(FAST_KEY, self.fast):
            fast = (await self.tagger.ensemble()).fast
            models = (fast,) if fast is not None else None
        return Options(models=models, threshold=context.chat_data.get(THRESHOLD_KEY))

    async def photo(self, update: Update, context: Context) -> None:
        """Tag the largest size of a compressed photo (each photo of an album arrives on its own)."""
        message = update.effective_message
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        await self._tag(message, context, largest.file_id, largest.file_size, PHOTO_TYPE)

    async def document(self, update: Update, context: Context) -> None:
        """Tag an image sent as a file; refuse other files before downloading anything."""
        message = update.effective_message
        doc = message.document
        if not is_image_document(doc.mime_type, doc.file_name):
            await self._answer(message, replies.not_an_image(doc.mime_type, doc.file_name))
            return
        await self._tag(message, context, doc.file_id, doc.file_size, image_media_type(doc.mime_type, doc.file_name))

    async def unsupported_media(self, update: Update, context: Context) -> None:
        """Explain that stickers, videos, voice and audio are not tagged."""
        message = update.effective_message
        kind = next((k for k in replies.MEDIA_NAMES if getattr(message, k, None)), "that")
        await self._answer(message, replies.unsupported_media(kind))

    async def text(self, update: Update, context: Context) -> None:
        """Answer plain text with what the bot expects."""
        await update.effective_message.reply_text(replies.TEXT)

    async def unknown_command(self, update: Update, context: Context) -> None:
        """Point to /help for commands the bot does not have."""
        await update.effective_message.reply_text(replies.UNKNOWN_COMMAND)

    async def error(self, update: object, context: Context) -> None:
        """Log a failure (the log formatter scrubs the token) and tell the user, if there is one."""
        error = context.error
        if not isinstance(update, Update):
            # Failures outside a handler (e.g. polling while the network is down); PTB retries by itself.
            log.warning("Bot API problem: %s", error)
            return
        log.error("handling update %s failed: %s", update.update_id, error, exc_info=error)
        message = update.effective_message
        if message is None:
            return
        try:
            await message.reply_text(replies.INTERNAL_ERROR, do_quote=True)
        except TelegramError as exc:
            log.warning("could not tell chat %s about the failure: %s", message.chat_id, exc)

    @staticmethod
    async def _answer(message: Message, text: str) -> None:
        """Reply to ``message``, retrying transient failures."""
        await with_retries(lambda: message.reply_text(text, do_quote=True), "sendMessage")

    async def _tag(self, message: Message, context: Context, file_id: str, declared_size: int | None,
                   media_type: str) -> None:
        """Download one image, tag it and reply with hashtags or a specific refusal."""
        if declared_size and declared_size > self.download_limit:
            await self._answer(message, replies.too_big(declared_size, self.download_limit))
            return
        async with typing_action(message):
            try:
                tg_file = await with_retries(lambda: context.bot.get_file(file_id), "getFile")
            except BadRequest as exc:
                if "too big" not in exc.message.lower():
                    raise
                await self._answer(message, replies.too_big(declared_size, self.download_limit))
                return
            if tg_file.file_size and tg_file.file_size > self.download_limit:
                await self._answer(message, replies.too_big(tg_file.file_size, self.download_limit))
                return
            data = await with_retries(tg_file.download_as_bytearray, "download")
            try:
                prediction = await self.tagger.predict(bytes(data), media_type, await self._options(context))
            except ImageError as exc:
                await self._answer(message, replies.unreadable(exc.reason))
                return
            except TaggerUnavailable as exc:
                log.warning("photo in chat %s not tagged: %s", message.chat_id, exc)
                await self._answer(message, replies.TAGGER_UNAVAILABLE)
                return
        text = replies.prediction_text(prediction)
        await self._answer(message, text)
