"""Shared fixtures: tiny real bundles and synthetic photos (see tinybundle.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tinybundle import make_bundle, make_photo

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-model bundle of tiny ONNX models (int8 and fp32 files)."""
    return make_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture()
def photos(tmp_path: Path) -> list[Path]:
    """Three small synthetic JPEG photos."""
    return [make_photo(tmp_path / f"photo{i}.jpg", seed=i) for i in range(3)]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """../shared/corpus, the real photo corpus; tests needing it skip when it is absent."""
    if not (CORPUS / "photos.tsv000").is_file():
        pytest.skip(f"needs the real photo corpus at {CORPUS} (../shared/corpus beside the checkout)")
    return CORPUS
