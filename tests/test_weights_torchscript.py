"""The torch-free TorchScript reader and the InceptionV3 mapping, on archives built here in the real format.

``write_torchscript`` emits the same pickle opcodes ``torch.jit.save`` writes (``__torch__`` classes built by
NEWOBJ + BUILD, tensors as ``torch._utils._rebuild_tensor_v2`` over ``BINPERSID`` storages, int lists through
``torch.jit._pickle.build_intlist``) plus raw little-endian storages under ``data/``, without needing torch.
"""
from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from hashtag.train.weights import WeightsError
from hashtag.train.weights.architectures import keras_application, layers_in_graph_order, producers
from hashtag.train.weights.inception_torchscript import map_tree, torch_layers
from hashtag.train.weights.torchscript import ScriptObject, read_code, read_torchscript

TORCH_DTYPES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


@dataclass
class Tensor:
    """A tensor as TorchScript pickles it: a view (offset, size, stride) of a named storage."""

    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass
class Module:
    qualname: str
    state: dict[str, Any]


@dataclass
class IntList:
    values: list[int]


@dataclass
class Call:
    """An arbitrary global called with args: what a malicious pickle would contain."""

    module: str
    name: str
    args: tuple


class _Pickle:
    def __init__(self, storages: dict[str, np.ndarray]) -> None:
        self.out = bytearray(b"\x80\x02")
        self.storages = storages

    def glob(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def items(self, values: Any) -> None:
        for value in values:
            self.dump(value)

    def dump(self, v: Any) -> None:
        out = self.out
        if v is None:
            out += b"N"
        elif isinstance(v, bool):
            out += b"\x88" if v else b"\x89"
        elif isinstance(v, int):
            out += b"J" + struct.pack("<i", v)
        elif isinstance(v, float):
            out += b"G" + struct.pack(">d", v)
        elif isinstance(v, str):
            raw = v.encode()
            out += b"X" + struct.pack("<I", len(raw)) + raw
        elif isinstance(v, tuple):
            out += b"("
            self.items(v)
            out += b"t"
        elif isinstance(v, list):
            out += b"](" if v else b"]"
            if v:
                self.items(v)
                out += b"e"
        elif isinstance(v, dict):
            out += b"}("
            for key, value in v.items():
                self.dump(key)
                self.dump(value)
            out += b"u"
        elif isinstance(v, IntList):
            self.glob("torch.jit._pickle", "build_intlist")
            self.dump((v.values,))
            out += b"R"
        elif isinstance(v, Module):
            module, name = v.qualname.rsplit(".", 1)
            self.glob(module, name)
            out += b")\x81"
            self.dump(v.state)
            out += b"b"
        elif isinstance(v, Tensor):
            storage = self.storages[v.key]
            self.glob("torch._utils", "_rebuild_tensor_v2")
            out += b"("
            out += b"("
            self.dump("storage")
            self.glob("torch", TORCH_DTYPES[storage.dtype])
            self.dump(v.key)
            self.dump("cpu")
            self.dump(int(storage.size))
            out += b"tQ"
            self.dump(v.offset)
            self.dump(v.size)
            self.dump(v.stride)
            self.dump(False)
            self.glob("collections", "OrderedDict")
            out += b")R"
            out += b"tR"
        elif isinstance(v, Call):
            self.glob(v.module, v.name)
            self.dump(v.args)
            out += b"R"
        else:
            raise TypeError(type(v))


def write_torchscript(
    path: Path, tree: Any, storages: dict[str, np.ndarray], code: dict[str, str] | None = None
) -> Path:
    """A TorchScript-format zip: <root>/data.pkl, <root>/data/<key>, <root>/code/..., <root>/version."""
    pickler = _Pickle(storages)
    pickler.dump(tree)
    pickler.out += b"."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", bytes(pickler.out))
        for key, array in storages.items():
            archive.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        for name, text in (code or {}).items():
            archive.writestr(f"archive/code/{name}", text)
        archive.writestr("archive/constants.pkl", b"\x80\x02).")
        archive.writestr("archive/version", "3\n")
    return path


def test_reader_rebuilds_tensors_views_and_module_tree(tmp_path: Path) -> None:
    storages = {"0": np.arange(24, dtype=np.float32), "1": np.array([5, 6, 7], dtype=np.int64)}
    conv = Module(
        "__torch__.net.Conv2dLayer",
        {
            "weight": Tensor("0", 0, (2, 3, 4), (12, 4, 1)),
            "beta": Tensor("0", 12, (3,), (2,)),
            "transposed": Tensor("0", 0, (4, 3), (1, 4)),
            "ids": Tensor("1", 0, (3,), (1,)),
            "training": False,
            "stride": 2,
            "padding": IntList([1, 0]),
        },
    )
    pool = Module("__torch__.torch.nn.modules.pooling.___torch_mangle_6.MaxPool2d", {"training": False})
    root = Module("__torch__.net.Net", {"training": False, "block": conv, "pool": pool, "name": "net"})
    path = write_torchscript(tmp_path / "m.pt", root, storages, {"__torch__/net.py": "class Net(Module):\n  pass\n"})

    tree = read_torchscript(path)
    assert tree.kind == "Net" and tree.attrs["name"] == "net"
    assert [(p, o.kind) for p, o in tree.walk()] == [("", "Net"), ("block", "Conv2dLayer"), ("pool", "MaxPool2d")]
    block = tree.attrs["block"]
    np.testing.assert_array_equal(block.attrs["weight"], np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(block.attrs["beta"], [12.0, 14.0, 16.0])
    np.testing.assert_array_equal(block.attrs["transposed"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    assert block.attrs["ids"].dtype == np.int64 and block.attrs["ids"].tolist() == [5, 6, 7]
    assert block.attrs["padding"] == [1, 0] and block.attrs["stride"] == 2
    block.attrs["weight"][0, 0, 0] = 99.0  # a private copy, not a read-only view of the zip's bytes
    assert tree.attrs["pool"].qualname.endswith("___torch_mangle_6.MaxPool2d")
    assert read_code(path) == {"__torch__/net.py": "class Net(Module):\n  pass\n"}


def test_reader_refuses_other_globals_without_running_them(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = Module("__torch__.net.Net", {"x": Call("posix", "system", (f"touch {marker}",))})
    path = write_torchscript(tmp_path / "evil.pt", evil, {})
    with pytest.raises(WeightsError, match="posix.system"):
        read_torchscript(path)
    assert not marker.exists()


def test_reader_rejects_overrun_and_non_zip(tmp_path: Path) -> None:
    storages = {"0": np.zeros(4, dtype=np.float32)}
    overrun = Module("__torch__.m.M", {"w": Tensor("0", 2, (3,), (1,))})
    path = write_torchscript(tmp_path / "bad.pt", overrun, storages)
    with pytest.raises(WeightsError, match="overruns"):
        read_torchscript(path)
    (tmp_path / "plain.pt").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a TorchScript zip"):
        read_torchscript(tmp_path / "plain.pt")


# --- InceptionV3: the archive's module tree mapped onto Keras ---------------------------------------------

BN_CODE = "    x1 = _0(x0, mean, var, None, beta, False, 0.10000000000000001, {eps}, )\n"
POOL_CODE = (
    "class MaxPool2d(Module):\n  padding : Final[int] = 1\n  kernel_size : Final[int] = 3\n  stride : Final[int] = 1\n"
)
MIXED10_POOL = "__torch__.torch.nn.modules.pooling.___torch_mangle_6.MaxPool2d"


def random_inception(seed: int) -> keras.Model:
    """InceptionV3 at its smallest input with random weights and batch-norm statistics."""
    model = keras_application("inceptionv3", 75)
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in w.path
            else rng.normal(0, 0.1, w.shape).astype("float32")
            for w in model.weights
        ]
    )
    return model


def tree_like_2015_graph(model: keras.Model, mixed10_pool: str = MIXED10_POOL) -> ScriptObject:
    """The module tree the FID TorchScript has, filled from a Keras InceptionV3 (OIHW kernels, BN without gamma)."""
    graph = layers_in_graph_order(model)
    bn_of = {id(producers(bn)[0]): bn for bn in graph if isinstance(bn, keras.layers.BatchNormalization)}
    pools = [layer for layer in graph if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D))]
    children: dict[str, ScriptObject] = {}
    for i, layer in enumerate(graph):
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            beta, mean, var = bn_of[id(layer)].get_weights()
            pad = [(kh - 1) // 2, (kw - 1) // 2] if layer.padding == "same" else 0
            attrs = {"weight": layer.get_weights()[0].transpose(3, 2, 0, 1), "beta": beta, "mean": mean, "var": var}
            attrs |= {"stride": layer.strides[0], "padding": pad}
            children[f"conv_{i}"] = ScriptObject("__torch__.inceptionv3.Conv2dLayer", attrs)
        elif layer is pools[-1]:
            children[f"pool_{i}"] = ScriptObject(mixed10_pool)
        elif layer in pools:
            kind = "MaxPool2d" if isinstance(layer, keras.layers.MaxPooling2D) else "AvgPool2d"
            children[f"pool_{i}"] = ScriptObject(f"__torch__.torch.nn.modules.pooling.{kind}")
    children["pool2"] = ScriptObject("__torch__.torch.nn.modules.pooling.___torch_mangle_8.AvgPool2d")
    return ScriptObject("__torch__.inceptionv3.InceptionV3", dict(children))


def code_for(eps: str = "0.001") -> dict[str, str]:
    return {
        "__torch__/inceptionv3.py": BN_CODE.format(eps=eps),
        "__torch__/torch/nn/modules/pooling/___torch_mangle_6.py": POOL_CODE,
    }


@pytest.fixture(scope="module")
def source_inception() -> keras.Model:
    return random_inception(seed=3)


def test_map_tree_copies_every_conv_and_batch_norm(source_inception: keras.Model) -> None:
    tree = tree_like_2015_graph(source_inception)
    convs, pools = torch_layers(tree)
    assert len(convs) == 94 and len(pools) == 13  # the trailing global pool is not part of the notop base
    target = keras_application("inceptionv3", 75)
    checks = map_tree(tree, code_for(), target)
    assert all(c["passed"] for c in checks)
    for got, want in zip(target.get_weights(), source_inception.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(0).normal(size=(2, 75, 75, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(target(x)), np.asarray(source_inception(x)), rtol=1e-5, atol=1e-5)


def test_map_tree_rejects_wrong_order_epsilon_and_pool(source_inception: keras.Model) -> None:
    tree = tree_like_2015_graph(source_inception)
    target = keras_application("inceptionv3", 75)
    names = list(tree.attrs)
    swapped = dict(tree.attrs)
    swapped[names[0]], swapped[names[1]] = tree.attrs[names[1]], tree.attrs[names[0]]  # 3x3x3x32 and 3x3x32x32
    with pytest.raises(WeightsError, match="does not fit Keras"):
        map_tree(ScriptObject(tree.qualname, swapped), code_for(), target)
    with pytest.raises(WeightsError, match="epsilon"):
        map_tree(tree, code_for(eps="1e-05"), target)
    keras_like = tree_like_2015_graph(source_inception, mixed10_pool="__torch__.torch.nn.modules.pooling.AvgPool2d")
    with pytest.raises(WeightsError, match="pooling layers"):
        map_tree(keras_like, code_for(), target)
