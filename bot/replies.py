"""Every text the bot sends, as pure functions, so wording and formatting are tested without Telegram."""
from __future__ import annotations

from typing import Sequence

from hashtag.bot.tagging import Ensemble
from hashtag.runtime.contract import Prediction, hashtag

MAX_MESSAGE_LENGTH = 4096  # Telegram's limit for one text message
# Decodable by the runtime (Pillow); other image/* types get a specific refusal.
IMAGE_MIME_TYPES = frozenset({"image/jpeg", "image/pjpeg", "image/png", "image/webp", "image/gif", "image/bmp",
                              "image/x-ms-bmp", "image/tiff"})
KNOWN_TYPES = {
    "application/pdf": "a PDF document",
    "application/zip": "a ZIP archive",
    "application/x-rar-compressed": "a RAR archive",
    "application/msword": "a Word document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "a Word document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "an Excel spreadsheet",
    "text/plain": "a text file",
    "image/heic": "a HEIC photo",
    "image/heif": "a HEIF photo",
    "image/svg+xml": "an SVG drawing",
}
MEDIA_NAMES = {
    "sticker": "a sticker",
    "video": "a video",
    "animation": "a GIF animation",
    "voice": "a voice message",
    "audio": "an audio file",
    "video_note": "a video message",
}

HELP = (
    "Send me a photo and I will suggest hashtags for it.\n\n"
    "• Send it as a photo, or as a file (a document) to keep the original quality. "
    "JPEG, PNG, WebP, GIF, BMP and TIFF files work, up to {limit}.\n"
    "• Albums work too: every photo gets its own answer.\n"
    "• The first line of my answer is ready to copy; below it, each model's own suggestions with scores.\n\n"
    "Commands:\n"
    "/models – the models and the hashtags they know\n"
    "/threshold 0.3 – show hashtags scored at least 0.3 in this chat (lower: more hashtags); "
    "/threshold reset – back to the tuned thresholds\n"
    "/fast on – answer with the fast model (much quicker, nearly as good); /fast off – the full ensemble\n"
    "/help – this message"
)
START = "Hi! I suggest hashtags for photos.\n\n" + HELP
TEXT = "I only understand photos. Send me a photo (or an image file) and I will suggest hashtags for it."
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."
INTERNAL_ERROR = "Sorry, something went wrong on my side while handling that. Please send it again in a minute."
TAGGER_UNAVAILABLE = "Sorry, my tagging service is not answering right now. Please try again in a few minutes."


def human_size(n_bytes: int) -> str:
    """'20 MB', '1.5 MB', '830 KB'."""
    if n_bytes >= 1024 * 1024:
        value = n_bytes / (1024 * 1024)
        return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"
    return f"{max(1, round(n_bytes / 1024))} KB"


def help_text(limit: int) -> str:
    """The /help answer."""
    return HELP.format(limit=human_size(limit))


def start_text(limit: int) -> str:
    """The /start answer."""
    return START.format(limit=human_size(limit))


def models_text(ensemble: Ensemble) -> str:
    """The /models answer: each model, its input size and precision, and the tags of the bundle."""
    lines = ["Models in the ensemble:"]
    for m in ensemble.models:
        if m.name != ensemble.fast:
            lines.append(f"• {m.name} ({m.input_size}×{m.input_size}, {m.precision})")
    if ensemble.fast is not None:
        m = next(m for m in ensemble.models if m.name == ensemble.fast)
        lines += ["", f"Fast model (/fast on): {m.name} ({m.input_size}×{m.input_size}, {m.precision})"]
    lines.append("")
    lines.append(f"Hashtags I know ({len(ensemble.tags)}):")
    lines.append(" ".join(hashtag(t) for t in ensemble.tags))
    return _fit("\n".join(lines))


FAST_USAGE = "Usage: /fast on, /fast off, or /fast to see which is used."
NO_FAST_MODEL = "This bot has no fast model: every photo is tagged by the full ensemble."


def parse_fast(args: Sequence[str]) -> bool:
    """The value of '/fast on|off'; ValueError otherwise."""
    word = args[0].lower() if len(args) == 1 else ""
    if word not in ("on", "off"):
        raise ValueError(FAST_USAGE)
    return word == "on"


def fast_text(fast: bool) -> str:
    """The answer to /fast: which models tag this chat's photos."""
    if fast:
        return "This chat's photos are tagged by the fast model. Send /fast off for the full ensemble."
    return "This chat's photos are tagged by the full ensemble. Send /fast on for the fast model."


def threshold_text(threshold: float | None) -> str:
    """The answer to /threshold without an argument, and after changing it."""
    if threshold is None:
        return ("This chat uses the tuned per-hashtag thresholds. "
                "Send /threshold 0.3 to see every hashtag scored at least 0.3.")
    return (f"This chat shows hashtags scored at least {threshold:.2f}. "
            "Send /threshold reset to use the tuned thresholds.")


THRESHOLD_USAGE = "Usage: /threshold 0.3 (a number between 0 and 1), or /threshold reset."


def parse_threshold(args: Sequence[str]) -> float | None:
    """The value of '/threshold X': a float in [0, 1], or None for 'reset'; ValueError otherwise."""
    if len(args) != 1:
        raise ValueError(THRESHOLD_USAGE)
    if args[0].lower() in ("reset", "default", "off"):
        return None
    try:
        value = float(args[0].replace(",", "."))
    except ValueError:
        raise ValueError(THRESHOLD_USAGE) from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(THRESHOLD_USAGE)
    return value


def prediction_text(prediction: Prediction) -> str:
    """The reply to a photo: the ensemble's hashtags on the first line, then one line per model with scores."""
    if prediction.hashtags:
        lines = [" ".join(prediction.hashtags)]
    else:
        best = max(prediction.scores, key=lambda t: prediction.scores[t])
        lines = [f"No hashtag is confident enough for this photo (closest: {hashtag(best)} "
                 f"{prediction.scores[best]:.2f})."]
    lines.append("")
    for name, model in prediction.models.items():
        shown = ", ".join(f"{hashtag(t)} {model.scores[t]:.2f}" for t in model.tags) or "nothing above threshold"
        lines.append(f"{name}: {shown}")
    return _fit("\n".join(lines))


def not_an_image(mime_type: str | None, file_name: str | None) -> str:
    """Refusal for a document that is not an image the bot can read, naming what was received."""
    mime = (mime_type or "").lower()
    if mime in KNOWN_TYPES:
        kind = f"{KNOWN_TYPES[mime]} ({mime})"
    elif mime:
        kind = f"a file of type {mime}"
    else:
        kind = "a file with no declared type"
    name = f" “{file_name}”" if file_name else ""
    if mime.startswith("image/"):
        return (f"You sent{name}, {kind}, which I can't read. "
                "Please send it as a photo, or as a JPEG, PNG or WebP file.")
    return f"You sent{name}, {kind}. I only tag images: please send a photo or an image file (JPEG, PNG, WebP…)."


def too_big(size: int | None, limit: int) -> str:
    """Refusal for a file over the download limit."""
    what = f"This file is {human_size(size)}" if size else "This file is too big"
    return (f"{what}; bots can only download files up to {human_size(limit)}. "
            "Please send a smaller version, or send it as a photo (Telegram compresses photos).")


def unreadable(reason: str) -> str:
    """Reply for an image that cannot be decoded (corrupt, truncated, not really an image)."""
    return f"I couldn't read that image ({reason}). Is the file complete? Please try another one."


def unsupported_media(kind: str) -> str:
    """Reply for stickers, videos, voice messages and other media the bot does not tag."""
    name = MEDIA_NAMES.get(kind, "that")
    return f"I can't tag {name}, only photos. Send me a photo (or an image file) and I will suggest hashtags."


def _fit(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 1] + "…"
