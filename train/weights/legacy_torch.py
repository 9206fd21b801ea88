"""Reading a legacy (pre-1.6, non-zip) ``torch.save`` state dict with pickle and numpy: no torch needed.

The file is five pickles in a row: magic number, protocol version, system info, the object (tensors refer to
storages by persistent id), and the list of storage keys; then each storage's raw little-endian bytes, each
preceded by its element count. Every pickle goes through one restricted unpickler that allows only the few
globals a state dict uses, so a file that asks for anything else (code) is refused instead of run, and every
tensor is checked to lie within its storage.
"""
from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from hashtag.train.weights.errors import WeightsError

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
                  "IntStorage": "<i4", "ByteStorage": "u1"}


class _Storage:
    """A storage named in the object pickle; its bytes come after the pickles."""

    def __init__(self, dtype: str, size: int) -> None:
        self.dtype, self.size = np.dtype(dtype), size
        self.data: np.ndarray | None = None


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> tuple:
    return (storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise WeightsError(f"refusing to load {module}.{name} from a state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, dtype_name, key, _location, size = pid[:5]
        if kind != "storage" or dtype_name not in STORAGE_DTYPES:
            raise WeightsError(f"unsupported storage {pid[:2]!r} in a legacy torch file")
        if key not in self.storages:
            self.storages[key] = _Storage(STORAGE_DTYPES[dtype_name], int(size))
        return self.storages[key]


def load_state_dict(path: Path) -> "OrderedDict[str, np.ndarray]":
    """Name -> numpy array (a copy, C order) for every tensor in a legacy ``torch.save`` file."""
    try:
        with open(path, "rb") as f:
            if _StateDictUnpickler(f).load() != MAGIC:
                raise WeightsError(f"{path}: not a legacy torch.save file (wrong magic number)")
            _StateDictUnpickler(f).load()  # protocol version
            _StateDictUnpickler(f).load()  # system info
            unpickler = _StateDictUnpickler(f)
            state = unpickler.load()
            for key in _StateDictUnpickler(f).load():
                storage = unpickler.storages[key]
                (count,) = struct.unpack("<q", f.read(8))
                raw = f.read(count * storage.dtype.itemsize)
                if count != storage.size or len(raw) != count * storage.dtype.itemsize:
                    raise WeightsError(f"{path}: storage {key} is truncated")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable legacy torch state dict ({exc})") from None
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, value in state.items():
        if not isinstance(value, tuple):
            continue
        storage, offset, size, stride = value
        extent = offset + sum((n - 1) * st for n, st in zip(size, stride)) + 1 if all(size) else offset
        if offset < 0 or min(stride, default=0) < 0 or extent > storage.size:
            raise WeightsError(f"{path}: tensor {name} reaches past its storage")
        item = storage.data.itemsize
        view = np.lib.stride_tricks.as_strided(storage.data[offset:], shape=size, strides=[s * item for s in stride])
        out[name] = np.array(view, dtype=storage.data.dtype.newbyteorder("="))
    return out
