"""Training, export and the runtime turn the same photo into the same model input, bit for bit: training
(``train/pixels.py``) and export (``export/data.py``) go through ``hashtag.runtime.preprocess``, as the tagger
does, for every backbone's size and preprocessing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hashtag.export.data import VAL, ExportImages
from hashtag.runtime.images import load_image
from hashtag.runtime.preprocess import normalized_batches, prepare_inputs
from hashtag.train.augment import make_view
from hashtag.train.backbones import SPECS
from hashtag.train.dataset import load_dataset
from hashtag.train.pixels import photo_batch
from trainkit import TAGS, make_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"), counts=(4, 5, 1))


def runtime_batch(paths: list[Path], size: int, prep) -> np.ndarray:
    """What the tagger feeds a model of this size and preprocessing (decoded as it decodes for that size)."""
    images = [load_image(p, min_side=size) for p in paths]
    return prepare_inputs(images, [(size, prep)])[(size, prep)]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_training_export_and_runtime_build_the_same_batch(data_dir: Path, name: str) -> None:
    spec = SPECS[name]
    size, prep = spec.native_size, spec.preprocessing
    val = load_dataset(data_dir).split("val")
    expected = runtime_batch([r.path for r in val], size, prep)
    assert expected.shape == (5, size, size, 3) and expected.dtype == np.float32

    np.testing.assert_array_equal(photo_batch(val, size, prep), expected)

    images = ExportImages(data_dir, TAGS, calibration_images=2, val_images=None, seed=0, progress=False)
    pixels = images.pixels(VAL, size, prep.resize)
    batches = list(normalized_batches(pixels, prep, batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_augmented_views_are_preprocessed_as_the_photo_itself(data_dir: Path) -> None:
    """A training view goes through the same preprocessing; only the view differs from the photo."""
    spec = SPECS["xception"]
    train = load_dataset(data_dir).split("train")
    views = [make_view(load_image(r.path), r.photo_id, 1) for r in train]
    expected = prepare_inputs(views, [(spec.native_size, spec.preprocessing)])[(spec.native_size, spec.preprocessing)]
    got = photo_batch(train, spec.native_size, spec.preprocessing, view=1)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, photo_batch(train, spec.native_size, spec.preprocessing))
