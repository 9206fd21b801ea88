"""What a worker does with uploads: decode each (no larger than the models need), run every served model
once, apply each request's options.

Used as is by the single process (in its thread pool) and by the Ray Serve replicas (on a dynamic
batch gathered from several requests), so both answer with the very same records.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from PIL import Image

from hashtag.runtime.contract import error_record
from hashtag.runtime.errors import ImageError
from hashtag.runtime.prediction import Options
from hashtag.runtime.tagger import Tagger

Record = dict[str, Any]


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name its record carries and its encoded bytes."""

    name: str
    data: bytes = field(repr=False)


def tag_uploads(tagger: Tagger, items: Sequence[tuple[Upload, Options]]) -> list[Record]:
    """One record per item, in order: its prediction under its own options, or its error record."""
    records: dict[int, Record] = {}
    decoded: list[tuple[int, Image.Image]] = []
    for i, (upload, _) in enumerate(items):
        try:
            decoded.append((i, tagger.decode(upload.data)))
        except ImageError as exc:
            records[i] = error_record(upload.name, exc.reason)
    if decoded:
        per_model = tagger.probabilities([image for _, image in decoded])
        groups: dict[Options, list[int]] = {}
        for row, (i, _) in enumerate(decoded):
            groups.setdefault(items[i][1], []).append(row)
        for options, rows in groups.items():
            probs = {name: p[rows] for name, p in per_model.items()}
            names = [items[decoded[r][0]][0].name for r in rows]
            for r, prediction in zip(rows, tagger.predictions(probs, names, options)):
                records[decoded[r][0]] = prediction.to_json()
    return [records[i] for i in range(len(items))]


@lru_cache(maxsize=1)
def probe_upload() -> Upload:
    """A small valid PNG: readiness checks run it through the whole path, decoding included."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 130, 140)).save(buf, "PNG")
    return Upload("readiness-probe", buf.getvalue())
