"""Storing one photo: decode, normalise and encode it, write it atomically, and journal every outcome.

Resume rests on two facts kept here: a file at its final path is complete (written under a temporary name
in the partial folder, then renamed), and every outcome is one flushed line in an append-only journal.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from hashtag.runtime.errors import ImageError
from hashtag.runtime.files import atomic_path
from hashtag.runtime.images import load_image

EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one photo; ``attempts`` counts its requests this run, retries included (0: found stored)."""

    photo_id: str
    ok: bool
    reason: str = ""
    detail: str = ""
    attempts: int = 0
    bytes: int = 0
    retryable: bool = False

    def to_record(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.photo_id, "ok": True, "bytes": self.bytes}
        return {"id": self.photo_id, "ok": False, "reason": self.reason, "detail": self.detail,
                "attempts": self.attempts, "retryable": self.retryable}

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Outcome":
        return cls(rec["id"], bool(rec["ok"]), rec.get("reason", ""), rec.get("detail", ""), 0,
                   int(rec.get("bytes", 0)), bool(rec.get("retryable", False)))


class Journal:
    """Append-only JSON lines, one per outcome; the last line for a photo wins. A line cut by a kill is ignored.

    ``records`` is what the file held when opened (appends are not mirrored: a fresh build keeps no
    per-photo state here).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        ends_cleanly = True
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace")
            ends_cleanly = not text or text.endswith("\n")
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                    self.records[str(rec["id"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue
        self._fh = path.open("a", encoding="utf-8")
        if not ends_cleanly:
            self._fh.write("\n")

    def append(self, outcome: Outcome) -> None:
        self._fh.write(json.dumps(outcome.to_record()) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def image_reason(reason: str) -> str:
    """The summary category of an ImageError's reason."""
    for category in ("not an image", "too many pixels", "empty"):
        if reason.startswith(category):
            return category
    return "corrupt image"


def _plain_jpeg(data: bytes) -> bool:
    """An RGB JPEG with no EXIF rotation: can be stored byte for byte, no second lossy encode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format == "JPEG" and img.mode == "RGB" and img.getexif().get(EXIF_ORIENTATION, 1) == 1
    except Exception:  # noqa: BLE001 - any oddity just means "re-encode"
        return False


def _scaled(size: tuple[int, int], max_side: int) -> tuple[int, int] | None:
    """The size with the shorter side at ``max_side`` (aspect kept), or None if already small enough."""
    w, h = size
    if min(w, h) <= max_side:
        return None
    scale = max_side / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def encode_image(data: bytes, max_side: int, quality: int) -> bytes:
    """Decode (RGB, EXIF applied), shrink so the shorter side is at most ``max_side``, encode JPEG.

    Every decoding problem, including the odd exception types Pillow plugins raise on hostile data,
    becomes an ImageError, so one bad photo can never stop a run.
    """
    try:
        img = load_image(data)
        target = _scaled(img.size, max_side)
        if target is None and _plain_jpeg(data):
            return data
        if target is not None:
            img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise ImageError(f"<{len(data)} bytes>", f"cannot decode: {exc or type(exc).__name__}") from None
    return buf.getvalue()


def is_stored(path: Path) -> bool:
    """A stored file counts only if it decodes completely."""
    try:
        load_image(path)
    except Exception:  # noqa: BLE001 - ImageError or anything odder: not a usable file either way
        return False
    return True


def write_atomically(payload: bytes, dest: Path, partial_dir: Path) -> None:
    """Write through ``partial_dir`` (same filesystem, emptied at each start): ``dest`` is either absent or complete."""
    with atomic_path(dest, partial_dir) as tmp:
        tmp.write_bytes(payload)
