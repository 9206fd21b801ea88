"""The model bundle shipped with hashtag (ONNX files + manifest.json), found relative to this package."""
import os
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parent
BUNDLE_ENV = "HASHTAG_MODELS"


def default_bundle() -> Path:
    """The bundle shipped in models/, or ``$HASHTAG_MODELS`` when set (a deployment's own bundle)."""
    return Path(os.environ.get(BUNDLE_ENV, DEFAULT_BUNDLE))
