"""Building the python-telegram-bot Application and running it with long polling or a webhook."""
from __future__ import annotations

import logging

from telegram.ext import Application, CommandHandler, MessageHandler, filters

from hashtag.bot.config import BotConfig
from hashtag.bot.handlers import Handlers
from hashtag.bot.lanes import ChatLanes
from hashtag.bot.ratelimit import FloodControl
from hashtag.bot.state import ChatSettings
from hashtag.bot.tagging import PhotoTagger

log = logging.getLogger(__name__)

# Only messages: edits, channel posts, inline queries and the like are never tagged.
ALLOWED_UPDATES = ["message"]
POLL_TIMEOUT_S = 10
UNSUPPORTED_MEDIA = (filters.Sticker.ALL | filters.VIDEO | filters.ANIMATION | filters.VOICE | filters.AUDIO
                     | filters.VIDEO_NOTE)


def build_application(config: BotConfig, tagger: PhotoTagger) -> Application:
    """An Application that talks to ``config.api_url`` and serves chats concurrently and fairly.

    ``tagger`` tags off the event loop (hashtag.bot.tagging); downloads and replies of other chats go on
    meanwhile. The application starts and closes it. Each chat's updates are handled in order, one at a
    time (hashtag.bot.lanes); outgoing calls keep to Telegram's flood limits (hashtag.bot.ratelimit);
    per-chat settings persist in ``config.state_file``. ConfigError if the state file cannot be used.
    """

    async def start(app: Application) -> None:
        await tagger.start()
        mode = f"webhook {config.webhook.url}" if config.webhook else "long polling"
        log.info("@%s is up (%s via %s), tagging with %s", app.bot.username, mode, config.api_url, tagger.where)

    async def stop(app: Application) -> None:
        await tagger.close()

    builder = (
        Application.builder()
        .token(config.token)
        .base_url(config.base_url)
        .base_file_url(config.base_file_url)
        .concurrent_updates(ChatLanes())
        .rate_limiter(FloodControl(config.message_interval_s))
        .post_init(start)
        .post_shutdown(stop)
    )
    if config.state_file is not None:
        builder = builder.persistence(ChatSettings(config.state_file))
    app = builder.build()
    h = Handlers(tagger, config.download_limit, config.fast)
    app.add_handler(CommandHandler("start", h.start))
    app.add_handler(CommandHandler("help", h.help))
    app.add_handler(CommandHandler("models", h.models))
    app.add_handler(CommandHandler("threshold", h.threshold))
    app.add_handler(CommandHandler("fast", h.fast_command))
    app.add_handler(MessageHandler(filters.COMMAND, h.unknown_command))
    app.add_handler(MessageHandler(filters.PHOTO, h.photo))
    # Before documents: Telegram sends a GIF animation with a document field too.
    app.add_handler(MessageHandler(UNSUPPORTED_MEDIA, h.unsupported_media))
    app.add_handler(MessageHandler(filters.Document.ALL, h.document))
    app.add_handler(MessageHandler(filters.TEXT, h.text))
    app.add_error_handler(h.error)
    return app


def run(app: Application, config: BotConfig) -> None:
    """Serve until SIGINT/SIGTERM; PTB then stops fetching updates and finishes the ones in flight."""
    if config.webhook is None:
        app.run_polling(timeout=POLL_TIMEOUT_S, allowed_updates=ALLOWED_UPDATES)
        return
    hook = config.webhook
    app.run_webhook(
        listen=hook.listen,
        port=hook.port,
        url_path=hook.url_path,
        webhook_url=hook.url,
        secret_token=hook.secret_token,
        allowed_updates=ALLOWED_UPDATES,
    )
