"""Tiny training fixtures: dataset folders in the `hashtag data build` format and stand-in conv backbones.

Photos come from tinybundle.make_photo; their blue channel level is 128 + 60*sin(seed), so the tags
'blue' (sin > 0) and 'very_blue' (sin > 0.5) are learnable from colour while 'odd' (seed % 3 == 0)
is noise - enough for a real head to learn something measurable in a few epochs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import keras

from hashtag.runtime.manifest import Preprocessing
from hashtag.train.features import Backbone
from tinybundle import make_photo

TAGS = ("blue", "very_blue", "odd")
TF_PREP = Preprocessing("tf", "RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
CAFFE_PREP = Preprocessing("caffe", "BGR", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def labels_of(seed: int) -> list[int]:
    s = math.sin(seed)
    return [int(s > 0), int(s > 0.5), int(seed % 3 == 0)]


def make_dataset(root: Path, counts: Sequence[int] = (24, 10, 10), start: int = 0,
                 unknown: Callable[[int], set[str]] | None = None) -> Path:
    """A dataset folder with ``counts`` photos in train/val/test (labels.tsv + dataset.json + images/).

    ``unknown(seed)``: the tags whose labels are unknown (-1) on that photo, as a format-2 dataset writes them.
    """
    rows = ["\t".join(("photo_id", "split", "file", *TAGS))]
    seed = start
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        for _ in range(n):
            pid = f"p{seed:04d}"
            rel = f"images/{pid[-2:]}/{pid}.jpg"
            size = (64, 48) if seed % 2 else (48, 64)
            make_photo(root / rel, size=size, seed=seed, fmt="JPEG")
            hidden = unknown(seed) if unknown else set()
            labels = [-1 if tag in hidden else v for tag, v in zip(TAGS, labels_of(seed), strict=True)]
            rows.append("\t".join((pid, split, rel, *map(str, labels))))
            seed += 1
    (root / "labels.tsv").write_text("\n".join(rows) + "\n")
    meta = {"version": 1, "tags": list(TAGS), "min_confidence": 99, "image_max_side": 299,
            "summary": {"stored": seed - start}}
    if unknown:
        meta.update(version=2, vocabulary={"mode": "tags"},
                    partial_labels={"source_column": "photo_source", "unknown_for": {"very_blue": ["odd photos"]}})
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def tiny_conv(input_size: int, seed: int = 1, channels: int = 8) -> keras.Model:
    """A two-layer conv net standing in for an ImageNet conv base (same seed -> same weights)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", activation="relu", kernel_initializer=init,
                            name="conv1")(inputs)
    x = keras.layers.Conv2D(channels * 2, 3, strides=2, padding="same", activation="relu",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1), name="conv2")(x)
    return keras.Model(inputs, x, name="tiny_base")


class TinyFactory:
    """backbone_factory for tests: counts how often each backbone is built."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str, input_size: int) -> Backbone:
        self.calls.append((name, input_size))
        seed = {"vgg16": 1, "inceptionv3": 2, "xception": 3}.get(name, 4)
        prep = CAFFE_PREP if name == "vgg16" else TF_PREP
        return Backbone(name, input_size, tiny_conv(input_size, seed), prep, {"source": "test", "seed": seed})


def write_tables(root: Path, seeds: range) -> Path:
    """An everyday-photos style tables folder (photos.tsv000, keywords.tsv000, images/) of trainkit's photos."""
    (root / "images").mkdir(parents=True)
    photos = ["photo_id\tphoto_image_url\tphoto_width\tphoto_height\tphoto_source"]
    keywords = ["photo_id\tkeyword\tai_service_1_confidence\tai_service_2_confidence\tsuggested_by_user"]
    for seed in seeds:
        pid = f"mir{seed:05d}"
        make_photo(root / "images" / f"{pid}.jpg", size=(80, 60), seed=seed, fmt="JPEG")
        photos.append(f"{pid}\timages/{pid}.jpg\t80\t60\tmirflickr")
        keywords += [f"{pid}\t{tag}\t100.0\t\tf" for tag, on in zip(TAGS, labels_of(seed)) if on]
    (root / "photos.tsv000").write_text("\n".join(photos) + "\n")
    (root / "keywords.tsv000").write_text("\n".join(keywords) + "\n")
    return root
