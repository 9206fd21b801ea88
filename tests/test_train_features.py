"""The feature cache: runtime preprocessing, reuse, subsets, resume after an interruption, spatial maps."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from hashtag.runtime.errors import ImageError
from hashtag.runtime.images import load_image
from hashtag.runtime.preprocess import normalize, resize_rgb
from hashtag.train.dataset import load_dataset
from hashtag.train.features import Backbone, FeatureCache, weights_sha256
from hashtag.train.progress import Progress
from trainkit import TF_PREP, make_dataset, tiny_conv

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list:
    root = make_dataset(tmp_path_factory.mktemp("ds"), counts=(12, 2, 2))
    return load_dataset(root).split("train")


def _backbone(seed: int = 1) -> Backbone:
    return Backbone("xception", SIZE, tiny_conv(SIZE, seed), TF_PREP, {"source": "test"})


def test_pooled_features_match_backbone_on_runtime_preprocessing(photos: list, tmp_path: Path) -> None:
    backbone = _backbone()
    cache = FeatureCache(tmp_path, backbone, batch_size=5, progress=False)
    stats = cache.ensure("train", photos)
    assert (stats.computed, stats.reused) == (12, 0)
    x = normalize(np.stack([resize_rgb(load_image(p.path), SIZE) for p in photos]), TF_PREP)
    expected = backbone.model.predict_on_batch(x).mean(axis=(1, 2))
    got = cache.pooled("train", photos, np.arange(12))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cache.pooled("train", photos, np.array([7, 2])), expected[[7, 2]], atol=1e-5)


def test_second_run_reuses_cache_and_other_weights_do_not(photos: list, tmp_path: Path) -> None:
    FeatureCache(tmp_path, _backbone(), progress=False).ensure("train", photos)
    again = FeatureCache(tmp_path, _backbone(), progress=False)  # rebuilt model, same weights: same cache
    assert (again.ensure("train", photos).computed, again.ensure("train", photos).reused) == (0, 12)
    other = FeatureCache(tmp_path, _backbone(seed=5), progress=False)
    assert other.root != again.root
    assert weights_sha256(other.backbone.model) != again.weights_sha256
    assert other.ensure("train", photos).computed == 12


def test_subset_rows_then_rest(photos: list, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, _backbone(), progress=False)
    assert cache.ensure("train", photos, rows=np.array([0, 5, 9])).computed == 3
    with pytest.raises(RuntimeError, match="missing"):
        cache.pooled("train", photos, np.array([0, 1]))
    assert cache.ensure("train", photos).computed == 9


def test_interrupted_extraction_resumes(photos: list, tmp_path: Path) -> None:
    broken = photos[7].path
    original = broken.read_bytes()
    broken.write_bytes(b"x" * len(original))  # same size: the cache keys rows on ids, file names and sizes
    cache = FeatureCache(tmp_path, _backbone(), batch_size=2, progress=False)
    try:
        with pytest.raises(ImageError):
            cache.ensure("train", photos)
    finally:
        broken.write_bytes(original)
    # Batches finished before the failure (rows 0-5) were flushed and marked done; only the rest is computed.
    resumed = FeatureCache(tmp_path, _backbone(), batch_size=2, progress=False).ensure("train", photos)
    assert (resumed.computed, resumed.reused) == (6, 6)
    fresh = FeatureCache(tmp_path / "fresh", _backbone(), progress=False)
    fresh.ensure("train", photos)
    np.testing.assert_allclose(cache.pooled("train", photos, np.arange(12)),
                               fresh.pooled("train", photos, np.arange(12)), atol=1e-6)


def test_spatial_maps_and_augmented_views(photos: list, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, _backbone(), progress=False)
    cache.ensure("train", photos, kinds=("pooled", "spatial"))
    maps = cache.spatial("train", photos, np.arange(12))
    assert maps.shape == (12, 8, 8, 16) and maps.dtype == np.float16
    pooled = cache.pooled("train", photos, np.arange(12))
    np.testing.assert_allclose(maps.astype(np.float32).mean(axis=(1, 2)), pooled, rtol=1e-2, atol=1e-2)
    # pooled only was cached before; asking for spatial again computes nothing
    assert cache.ensure("train", photos, kinds=("spatial",)).computed == 0
    assert cache.ensure("train", photos, view=1).computed == 12
    assert not np.allclose(cache.pooled("train", photos, np.arange(12), view=1), pooled)
    with pytest.raises(ValueError, match="kind"):
        cache.ensure("train", photos, kinds=("logits",))


def test_progress_lines_off_a_terminal() -> None:
    stream = io.StringIO()  # not a TTY: status lines instead of a bar
    with Progress(5, "vgg16 features train", stream=stream) as bar:
        bar.update(2)
        bar.update(3)
    assert stream.getvalue().startswith("vgg16 features train: 5/5 (")
    quiet = io.StringIO()
    with Progress(5, "epochs", stream=quiet, closing_line=False) as bar:
        bar.update(5)
    with Progress(5, "off", enabled=False, stream=quiet) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""
