"""`hashtag serve --ray`: the same app on a real local Ray instance (no dashboard) with 2 tagger replicas."""
from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from servekit import PROVIDER, ServeProcess, busy_uploads, cli_records, in_flight, jpeg_bytes, wait_for

pytestmark = pytest.mark.ray
RAY_START_S = 180  # Ray's processes, the controller, the proxy and three replicas on a busy 2-core machine
CLIENTS = 8
REQUESTS_PER_CLIENT = 4


class RayServer:
    """`hashtag serve --ray` on one local Ray instance shared by the module's tests, started when a test first
    needs it and started again for a test that comes after one that stopped it (whatever the order)."""

    def __init__(self, bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.args = ["--ray", "--bundle", str(bundle), "--provider", PROVIDER, "--replicas", "2",
                     "--max-batch-size", "4", "--log-level", "warning"]
        self.tmp_path_factory = tmp_path_factory
        self.current: ServeProcess | None = None

    def running(self) -> ServeProcess:
        if self.current is None or self.current.proc.poll() is not None:
            server = ServeProcess(self.tmp_path_factory.mktemp("ray"), self.args)
            try:
                server.wait_ready(RAY_START_S)
            except BaseException:
                server.stop(120)
                raise
            self.current = server
        return self.current

    def stop(self) -> None:
        """SIGTERM to a server still running; it must drain and exit by the signal."""
        if self.current is not None and self.current.proc.poll() is None:
            code = self.current.stop(120)
            assert code == -signal.SIGTERM, self.current.output()[-3000:]


@pytest.fixture(scope="module")
def ray_servers(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServer]:
    servers = RayServer(tiny_bundle, tmp_path_factory)
    yield servers
    servers.stop()


@pytest.fixture()
def ray_server(ray_servers: RayServer) -> ServeProcess:
    """A running `hashtag serve --ray` (the module's, unless a test before this one stopped it)."""
    return ray_servers.running()


def assert_same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same records; scores may differ in the last bits (other batch compositions)."""
    assert [r["image"] for r in got] == [r["image"] for r in expected]
    for g, e in zip(got, expected):
        assert set(g) == set(e) and g["error"] == e["error"]
        if e["error"] is None:
            assert g["hashtags"] == e["hashtags"] and g["scores"] == pytest.approx(e["scores"], abs=1e-5)
            assert {n: m["hashtags"] for n, m in g["models"].items()} == {n: m["hashtags"] for n, m in e["models"].items()}


def test_two_replicas_serve_the_cli_records(ray_server: ServeProcess, tiny_bundle: Path, photos: list[Path],
                                            tmp_path: Path) -> None:
    assert "Adding 2 replicas to Deployment(name='tagger'" in ray_server.output()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg_bytes(320, 240)[:2000])
    files = [photos[1], broken, photos[0], photos[2]]
    answer = httpx.post(ray_server.url + "/v1/tags", params={"threshold": 0.3, "top_k": 2},
                        files=[("image", (str(p), p.read_bytes(), "image/jpeg")) for p in files], timeout=60)
    assert answer.status_code == 200, answer.text
    expected = {r["image"]: r for r in cli_records("--bundle", str(tiny_bundle), "--threshold", "0.3", "--top-k", "2",
                                                   *map(str, files))}
    assert_same(answer.json()["results"], [expected[str(p)] for p in files])


def test_concurrent_clients_all_get_their_own_answers(ray_server: ServeProcess, tiny_bundle: Path,
                                                      photos: list[Path]) -> None:
    expected = {r["image"]: r for r in cli_records("--bundle", str(tiny_bundle), *map(str, photos))}

    def client(k: int) -> list[tuple[Path, httpx.Response]]:
        out = []
        with httpx.Client(base_url=ray_server.url, timeout=60) as c:
            for i in range(REQUESTS_PER_CLIENT):
                photo = photos[(k + i) % len(photos)]
                out.append((photo, c.post("/v1/tags", content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"})))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for batch in pool.map(client, range(CLIENTS)) for a in batch]
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    for photo, answer in answers:
        assert answer.status_code == 200, answer.text
        assert_same(answer.json()["results"], [{**expected[str(photo)], "image": "image-0"}])


@pytest.mark.parametrize(("params", "content", "content_type", "status"), [
    ({}, b"%PDF-1.4\n", "application/pdf", 415),
    ({}, b"", "image/jpeg", 400),
    ({}, b"text, not a photo", "image/jpeg", 400),
    ({}, b"\xff" * (60 * 1024 * 1024), "image/jpeg", 413),
    ({"threshold": 2}, None, "image/jpeg", 422),
    ({"top_k": 0}, None, "image/jpeg", 422),
    ({"models": "resnet"}, None, "image/jpeg", 422),
], ids=["pdf", "empty", "text", "60MB", "threshold=2", "top_k=0", "unknown model"])
def test_bad_input_on_ray(ray_server: ServeProcess, photos: list[Path], params: dict, content: bytes | None,
                          content_type: str, status: int) -> None:
    good = photos[0].read_bytes()
    answer = httpx.post(ray_server.url + "/v1/tags", params=params, content=good if content is None else content,
                        headers={"Content-Type": content_type}, timeout=60)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"]
    again = httpx.post(ray_server.url + "/v1/tags", content=good, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert again.status_code == 200


def test_models_health_and_page(ray_server: ServeProcess) -> None:
    assert httpx.get(ray_server.url + "/v1/models").json()["served"] == ["vgg16", "inceptionv3", "xception"]
    assert httpx.get(ray_server.url + "/healthz").json() == {"status": "ok", "in_flight": 0}
    assert httpx.get(ray_server.url + "/readyz").json() == {"status": "ready"}
    page = httpx.get(ray_server.url + "/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert httpx.get(ray_server.url + "/static/app.js").status_code == 200


def test_sigterm_drains_the_request_in_flight(ray_server: ServeProcess) -> None:
    """Stops the module's server: a test after this one gets a new one (last in this file, so none does)."""
    big = busy_uploads(12)
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(
        answer=httpx.post(ray_server.url + "/v1/tags", files=big, timeout=120), done_at=time.monotonic()))
    thread.start()
    wait_for(lambda: in_flight(ray_server.url) == 1, "the upload received by the gateway and sent to the replicas")
    signalled_at = time.monotonic()
    assert ray_server.stop(120) == -signal.SIGTERM
    thread.join(120)
    assert result["done_at"] > signalled_at  # the answer came after the signal: it was in flight
    answer = result["answer"]
    assert answer.status_code == 200, answer.text
    assert [r["image"] for r in answer.json()["results"]] == [f"big{i}.png" for i in range(12)]


def test_app_builder_for_serve_run_and_kuberay(tiny_bundle: Path, tmp_path: Path) -> None:
    from ray import serve

    from hashtag.runtime.errors import HashtagError
    from hashtag.serve.ray_app import app_builder, configs_from_args

    key = tmp_path / "key"
    key.write_text("k3y\n")
    config, ray_config = configs_from_args({"bundle": str(tiny_bundle), "models": "vgg16, xception",
                                            "api_key_file": str(key), "max_upload_mb": "5", "replicas": "3",
                                            "max_batch_size": 4})
    assert (config.bundle, config.models, config.api_key, config.max_upload_bytes) == (
        tiny_bundle, ("vgg16", "xception"), "k3y", 5 * 1024 * 1024)
    assert (ray_config.replicas, ray_config.max_batch_size) == (3, 4)
    assert isinstance(app_builder({"bundle": str(tiny_bundle)}), serve.Application)
    with pytest.raises(HashtagError, match="unknown argument 'replica'"):
        configs_from_args({"replica": 2})
    with pytest.raises(HashtagError, match="replicas must be at least 1"):
        configs_from_args({"replicas": 0})
