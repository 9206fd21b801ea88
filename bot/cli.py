"""``hashtag bot``: run the Telegram bot on a model bundle or a `hashtag serve` (secrets from the environment
or files, never argv)."""
from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
from telegram.error import InvalidToken, TelegramError

from hashtag.bot.app import build_application, run
from hashtag.bot.config import (
    DEFAULT_API_URL, BotConfig, WebhookConfig, default_state_file, default_workers, read_secret, read_token,
)
from hashtag.bot.logs import configure_logging
from hashtag.bot.remote import RemoteTagger
from hashtag.bot.tagging import LocalTagger, PhotoTagger
from hashtag.runtime.errors import ConfigError, HashtagError
from hashtag.runtime.manifest import load_bundle
from hashtag.runtime.options import (
    bundle_option, deprecated_models_dir_option, log_level_option, provider_option, resolve_bundle, threads_option,
    workers_option,
)
from hashtag.runtime.settings import BOT_API_URL_ENV, BOT_TOKEN_ENV, TAGGER_URL_ENV, WEBHOOK_SECRET_ENV, settings
from hashtag.runtime.tagger import Tagger

log = logging.getLogger("hashtag.bot")
WEBHOOK_ONLY = ("listen", "port", "secret_token")
LOCAL_ONLY = {"bundle_dir": "--bundle", "models_arg": "--models", "provider": "--provider", "workers": "--workers",
              "threads": "--threads"}  # options of models loaded here, not with --tagger-url


@click.command("bot")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help=f"File holding the bot token (default: ${BOT_TOKEN_ENV}).")
@click.option("--api-url", default=None,
              help=f"Bot API server, for a self-hosted one (default: ${BOT_API_URL_ENV}, else {DEFAULT_API_URL}).")
@click.option("--tagger-url", default=None,
              help=f"Tag photos with the `hashtag serve` at this URL instead of loading models "
                   f"(default: ${TAGGER_URL_ENV}).")
@click.option("--tagger-key-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File holding the API key of the --tagger-url server.")
@bundle_option
@deprecated_models_dir_option
@provider_option
@workers_option
@threads_option
@click.option("--webhook-url", default=None,
              help="Receive updates by webhook at this public URL instead of long polling.")
@click.option("--listen", default="127.0.0.1", show_default=True, help="Webhook mode: address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True,
              help="Webhook mode: port to listen on.")
@click.option("--secret-token", default=None,
              help=f"Webhook mode: secret Telegram sends in each request (default: ${WEBHOOK_SECRET_ENV}).")
@click.option("--state-file", type=click.Path(path_type=Path), default=None,
              help="SQLite file keeping per-chat settings across restarts, created private "
                   "(default: bot-<bot id>-state.sqlite3 in the user's data directory, e.g. ~/.local/share/hashtag).")
@click.option("--fast", is_flag=True, help="Chats get the bundle's fast model until they send /fast off.")
@log_level_option
@click.pass_context
def bot(
    ctx: click.Context, token_file: Path | None, api_url: str | None, tagger_url: str | None,
    tagger_key_file: Path | None,
    bundle_dir: Path | None, models_arg: str | None, provider: str,
    workers: int | None, threads: int | None, webhook_url: str | None, listen: str, port: int,
    secret_token: str | None, state_file: Path | None, fast: bool, log_level: str,
) -> None:
    """Run the Telegram bot: it answers photos with hashtag suggestions. Stop it with Ctrl-C or SIGTERM."""
    try:
        env = settings()
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    api_url, tagger_url = api_url or env.bot_api_url or DEFAULT_API_URL, tagger_url or env.tagger_url
    secret_token = secret_token or env.webhook_secret
    if webhook_url is None:
        given = [p for p in WEBHOOK_ONLY if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} needs --webhook-url")
    if tagger_url is not None:
        given = [p for p in LOCAL_ONLY if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{LOCAL_ONLY[given[0]]} is for models loaded here, not with --tagger-url")
    elif tagger_key_file is not None:
        raise click.UsageError("--tagger-key-file needs --tagger-url")
    try:
        webhook = WebhookConfig(webhook_url, listen, port, secret_token) if webhook_url else None
        token = read_token(token_file, env)
        models = None if tagger_url else resolve_bundle(bundle_dir, models_arg, names_allowed=False)[0]
        config = BotConfig(token=token, models=models, tagger_url=tagger_url,
                           tagger_key=read_secret(tagger_key_file, "tagger key") if tagger_key_file else None,
                           api_url=api_url, provider=provider, workers=workers or default_workers(),
                           threads=threads, webhook=webhook, state_file=state_file or default_state_file(token),
                           fast=fast)
    except HashtagError as exc:
        raise click.ClickException(str(exc)) from None
    formatter = configure_logging(getattr(logging, log_level.upper()), config.secrets)
    with contextlib.ExitStack() as stack:
        try:
            run(build_application(config, make_tagger(config, stack)), config)
        except HashtagError as exc:
            raise click.ClickException(str(exc)) from None
        except InvalidToken:
            raise click.ClickException(f"the Bot API at {config.api_url} rejected the token") from None
        except TelegramError as exc:
            raise click.ClickException(
                f"cannot start the bot with the Bot API at {config.api_url}: {formatter.redact(str(exc))}"
            ) from None
    log.info("stopped")


def make_tagger(config: BotConfig, stack: contextlib.ExitStack) -> PhotoTagger:
    """The remote tagger, or the bundle loaded here with its inference pool (closed by ``stack``)."""
    if config.tagger_url is not None:
        return RemoteTagger(config.tagger_url, config.tagger_key)
    executor = stack.enter_context(ThreadPoolExecutor(config.workers, thread_name_prefix="hashtag-infer"))
    bundle = load_bundle(config.models)  # every model: chats switch between the ensemble and the fast one
    if config.fast and bundle.fast is None:
        raise ConfigError(f"--fast: the bundle at {bundle.root} has no fast model")
    tagger = Tagger(bundle, provider=config.provider, threads=config.threads, models=[m.name for m in bundle.models],
                    default_models=bundle.ensemble_names)
    return LocalTagger(tagger, executor)
