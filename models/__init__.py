"""The model bundle shipped with hashtag (ONNX files + manifest.json), found relative to this package.

A deployment names its own default bundle with ``$HASHTAG_MODELS``, read by ``hashtag.runtime.settings``.
"""
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parent
