"""Reference probabilities of the shipped bundle on a fixed sample of the corpus test split.

CI compares the bundle against these instead of re-scoring all 2,547 test photos (11 minutes on a 2-core
AVX2 machine); the full re-score against the model card stays as an opt-in run (HASHTAG_CARD_RESCORE=1).
After shipping a new bundle, write the reference again:

    python tests/shipped_reference.py ../shared/corpus
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hashtag.models import DEFAULT_BUNDLE
from hashtag.runtime import Tagger, load_bundle
from hashtag.runtime.images import load_image
from hashtag.runtime.manifest import manifest_sha256

REFERENCE = Path(__file__).resolve().parent / "data" / "shipped_reference.json"
SAMPLE = 48  # photos: every 50th of the test split in id order, so both sources are in it
PROVIDER, PRECISION = "cpu", "int8"


def sample_photos(corpus: Path) -> list[Path]:
    """The fixed sample of the corpus test split."""
    from hashtag.export.bundle_eval import split_photos

    paths = sorted(split_photos(corpus, load_bundle(DEFAULT_BUNDLE).tags, "test").paths, key=lambda p: p.name)
    return paths[::50][:SAMPLE]


def probabilities(paths: list[Path]) -> dict[str, dict[str, list[float]]]:
    """photo file name -> model (the fast one too) -> probabilities in the bundle's tag order (ONNX Runtime,
    INT8, full decode)."""
    bundle = load_bundle(DEFAULT_BUNDLE)
    tagger = Tagger(bundle, provider=PROVIDER, precision=PRECISION, models=[m.name for m in bundle.models])
    out: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        per_model = tagger.probabilities([load_image(path)])
        out[path.name] = {name: [round(float(p), 6) for p in probs[0]] for name, probs in per_model.items()}
    return out


def write(corpus: Path) -> dict[str, Any]:
    """Score the sample with the shipped bundle and store it beside the tests."""
    reference = {"bundle_manifest_sha256": manifest_sha256(DEFAULT_BUNDLE), "provider": PROVIDER,
                 "precision": PRECISION, "tags": list(load_bundle(DEFAULT_BUNDLE).tags),
                 "probabilities": probabilities(sample_photos(corpus))}
    REFERENCE.write_text(json.dumps(reference, indent=1) + "\n")
    return reference


if __name__ == "__main__":
    write(Path(sys.argv[1]))
