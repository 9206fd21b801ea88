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
    """One record per item, in order: its prediction under its own options, or its error record.

    Each model runs once over the images whose options need it (a ``fast=true`` request does not run the
    ensemble); the options' thresholds and cuts are then applied per request.
    """
    records: dict[int, Record] = {}
    decoded: dict[int, Image.Image] = {}
    for i, (upload, _) in enumerate(items):
        try:
            decoded[i] = tagger.decode(upload.data)
        except ImageError as exc:
            records[i] = error_record(upload.name, exc.reason)
    by_models: dict[tuple[str, ...], list[int]] = {}
    for i in decoded:
        by_models.setdefault(items[i][1].chosen(tagger.names, tagger.default_names), []).append(i)
    for chosen, indices in by_models.items():
        per_model = tagger.probabilities([decoded[i] for i in indices], chosen)
        by_options: dict[Options, list[int]] = {}
        for row, i in enumerate(indices):
            by_options.setdefault(items[i][1], []).append(row)
        for options, rows in by_options.items():
            probs = {name: p[rows] for name, p in per_model.items()}
            names = [items[indices[r]][0].name for r in rows]
            for r, prediction in zip(rows, tagger.predictions(probs, names, options)):
                records[indices[r]] = prediction.to_json()
    return [records[i] for i in range(len(items))]


@lru_cache(maxsize=1)
def probe_upload() -> Upload:
    """A small valid PNG: readiness checks run it through the whole path, decoding included."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 130, 140)).save(buf, "PNG")
    return Upload("readiness-probe", buf.getvalue())
