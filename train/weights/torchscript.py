"""Reading a TorchScript archive's parameters without torch.

A TorchScript file is a zip: ``<root>/data.pkl`` pickles the module tree, each tensor as a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is a persistent id
``("storage", FloatStorage, key, location, numel)`` naming the raw little-endian file ``<root>/data/<key>``.
We resolve exactly those names to numpy and refuse every other global, so an untrusted archive cannot run
code while we read it; TorchScript classes (``__torch__.*``) become plain attribute holders.
"""
from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashtag.train.weights.errors import WeightsError

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # numpy has no bfloat16; refused with a clear message
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class ScriptObject:
    """One pickled TorchScript object (a module): its class name and attributes in pickle order."""

    qualname: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The bare class name, e.g. ``Conv2dLayer`` or ``MaxPool2d`` (mangling prefixes dropped)."""
        return self.qualname.rsplit(".", 1)[-1]

    def children(self) -> Iterator[tuple[str, ScriptObject]]:
        """Sub-objects in definition order, as TorchScript stored them."""
        for name, value in self.attrs.items():
            if isinstance(value, ScriptObject):
                yield name, value

    def walk(self, prefix: str = "") -> Iterator[tuple[str, ScriptObject]]:
        """Depth-first (pre-order) over the tree with dotted paths."""
        yield prefix, self
        for name, child in self.children():
            yield from child.walk(f"{prefix}.{name}" if prefix else name)


@dataclass(frozen=True)
class _Storage:
    dtype_name: str
    key: str


class _Unpickler(pickle.Unpickler):
    """Resolves torch's tensor rebuild and storage names to numpy; everything else outside __torch__ is refused."""

    def __init__(self, file: Any, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(file)
        self._archive = archive
        self._root = root
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda tensor, requires_grad, hooks: tensor
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return dict
        if module.startswith("__torch__"):
            return _script_class(f"{module}.{name}")
        raise WeightsError(f"TorchScript archive refers to {module}.{name}, which this reader does not allow")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise WeightsError(f"unexpected persistent id in TorchScript archive: {pid!r}")
        return _Storage(dtype_name=pid[1], key=str(pid[2]))

    def _storage_array(self, storage: _Storage) -> np.ndarray:
        if storage.key not in self._storages:
            dtype = STORAGE_DTYPES.get(storage.dtype_name)
            if dtype is None:
                raise WeightsError(f"TorchScript storage type {storage.dtype_name} is not supported")
            raw = self._archive.read(f"{self._root}/data/{storage.key}")
            self._storages[storage.key] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        return self._storages[storage.key]

    def _rebuild_tensor(self, storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
        flat = self._storage_array(storage)
        if not size:
            return flat[offset].copy()
        needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if needed > flat.size:
            raise WeightsError(f"TorchScript tensor overruns its storage {storage.key} ({needed} > {flat.size})")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=tuple(size), strides=tuple(s * flat.itemsize for s in stride), writeable=False
        )
        return np.array(view, dtype=flat.dtype.newbyteorder("="))


_CLASSES: dict[str, type] = {}


def _script_class(qualname: str) -> type:
    """A stand-in class per TorchScript class name; unpickling fills its ``attrs`` from the pickled state."""
    if qualname not in _CLASSES:

        def setstate(self: ScriptObject, state: Any) -> None:
            if not isinstance(state, dict):
                raise WeightsError(f"{qualname} has non-dict state in the TorchScript archive")
            self.qualname, self.attrs = qualname, dict(state)

        def new(cls: type, *args: Any) -> ScriptObject:
            obj = object.__new__(cls)
            obj.qualname, obj.attrs = qualname, {}
            return obj

        namespace = {"__setstate__": setstate, "__new__": new}
        _CLASSES[qualname] = type(qualname.rsplit(".", 1)[-1], (ScriptObject,), namespace)
    return _CLASSES[qualname]


def read_torchscript(path: Path | str) -> ScriptObject:
    """The module tree of a TorchScript zip, tensors as numpy arrays (copied, native byte order)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a TorchScript zip ({exc})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{path}: expected one <root>/data.pkl in the TorchScript zip, found {len(pickles)}")
        root = pickles[0].split("/", 1)[0]
        with archive.open(pickles[0]) as fh:
            try:
                tree = _Unpickler(fh, archive, root).load()
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
                raise WeightsError(f"{path}: cannot read the TorchScript pickle ({exc})") from None
    if not isinstance(tree, ScriptObject):
        raise WeightsError(f"{path}: the TorchScript pickle holds {type(tree).__name__}, not a module")
    return tree


def read_code(path: Path | str) -> dict[str, str]:
    """The TorchScript source files of the archive (``<root>/code/...py``), by path inside ``code/``."""
    with zipfile.ZipFile(path) as archive:
        return {
            name.split("/code/", 1)[1]: archive.read(name).decode("utf-8", "replace")
            for name in archive.namelist()
            if "/code/" in name and name.endswith(".py")
        }
