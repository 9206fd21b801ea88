"""``GET /v1/models``: what ``hashtag models`` shows, as JSON, plus which models this server runs and how."""
from __future__ import annotations

from typing import Any

from hashtag.runtime.providers import available_providers
from hashtag.runtime.tagger import Tagger


def models_document(tagger: Tagger) -> dict[str, Any]:
    """The bundle's models (input, preprocessing, tags, thresholds, files), the served ones and providers."""
    bundle = tagger.bundle
    running = {d["model"]: d for d in tagger.describe()}
    return {
        "bundle": bundle.root.name,
        "served": list(running),
        "default": list(tagger.default_names),  # what a request without models or fast runs
        "fast": bundle.fast.name if bundle.fast and bundle.fast.name in running else None,  # what fast=true runs
        "tags": list(bundle.tags),
        "ensemble_thresholds": dict(bundle.ensemble_thresholds),
        "models": [
            {
                "name": spec.name,
                "role": spec.role,
                "input_size": spec.input_size,
                "preprocessing": spec.preprocessing.to_dict(),
                "tags": list(spec.tags),
                "thresholds": dict(spec.thresholds),
                "files": [{"precision": v.precision, "file": v.path.name, "bytes": v.path.stat().st_size}
                          for v in spec.variants.values()],
                "running": ({k: running[spec.name][k] for k in ("precision", "precision_reason", "file", "providers")}
                            if spec.name in running else None),
            }
            for spec in bundle.models
        ],
        "providers": available_providers(),
    }
