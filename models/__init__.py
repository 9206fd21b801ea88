"""The model bundle shipped with hashtag (ONNX files + manifest.json), found relative to this package."""
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parent
