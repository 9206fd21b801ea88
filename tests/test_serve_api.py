"""The HTTP API over real loopback HTTP: the contract, bad input, limits, the key, a busy pool, timeouts."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from hashtag.runtime.cpu import cpu_features, faster_cpu_precision
from hashtag.serve.config import ServeConfig
from servekit import bomb_png, busy_uploads, cli_records, in_flight, jpeg_bytes, thread_server, wait_for
from tinybundle import TAGS

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
KEY = "s3cret-key_for-tests-only"
BIG_PHOTOS = 12  # 4000x3000 PNGs, which no decoder can reduce early: about a second for one worker
# Far below what BIG_PHOTOS take (0.7 s on a quiet 2-core machine, more when it is busy), far above what one
# small photo takes on a free worker (about 1 ms)
SHORT_TIMEOUT_S = 0.2


@pytest.fixture(scope="module")
def url(tiny_bundle: Path) -> Any:
    with thread_server(ServeConfig(bundle=tiny_bundle, workers=2)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Any:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def big_photos() -> list[tuple[str, tuple[str, bytes, str]]]:
    return busy_uploads(BIG_PHOTOS)


def multipart(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """Each file as an ``image`` part named by its path, so its record names it as the CLI does."""
    return [("image", (str(p), p.read_bytes(), "image/jpeg")) for p in paths]


def test_records_are_the_cli_json_in_upload_order(client: httpx.Client, tiny_bundle: Path, photos: list[Path],
                                                   tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    files = [photos[2], broken, photos[0], photos[1]]
    answer = client.post("/v1/tags", files=multipart(files))
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["image"] for r in results] == [str(p) for p in files]
    expected = {r["image"]: r for r in cli_records("--bundle", str(tiny_bundle), *map(str, files))}
    assert results == [expected[str(p)] for p in files]
    assert set(results[1]) == {"image", "error"} and results[1]["error"]


def test_query_options_are_the_cli_options(client: httpx.Client, tiny_bundle: Path, photos: list[Path]) -> None:
    answer = client.post("/v1/tags", params={"threshold": 0.3, "top_k": 2, "models": "xception,vgg16"},
                         files=multipart(photos))
    assert answer.status_code == 200, answer.text
    expected = cli_records("--bundle", str(tiny_bundle), "--threshold", "0.3", "--top-k", "2",
                           "--models", "xception,vgg16", *map(str, photos))
    assert answer.json()["results"] == expected
    assert all(len(r["hashtags"]) == 2 for r in expected)  # the options did change the answer
    assert all(list(r["models"]) == ["xception", "vgg16"] for r in expected)


def test_raw_body(client: httpx.Client, tiny_bundle: Path, photos: list[Path]) -> None:
    answer = client.post("/v1/tags", content=photos[0].read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    (record,) = answer.json()["results"]
    (expected,) = cli_records("--bundle", str(tiny_bundle), str(photos[0]))
    assert record == {**expected, "image": "image-0"}
    assert set(record["scores"]) == set(TAGS)


BAD_INPUT: list[tuple[str, int, Callable[[httpx.Client], httpx.Response]]] = [
    ("empty body", 400, lambda c: c.post("/v1/tags", content=b"", headers={"Content-Type": "image/jpeg"})),
    ("a PDF", 415, lambda c: c.post("/v1/tags", content=PDF, headers={"Content-Type": "application/pdf"})),
    ("a PDF in a form", 400, lambda c: c.post("/v1/tags", files={"image": ("doc.pdf", PDF, "application/pdf")})),
    ("no content type", 415, lambda c: c.post("/v1/tags", content=jpeg_bytes(64, 48))),
    ("text as image/jpeg", 400,
     lambda c: c.post("/v1/tags", content=b"hello, I am text", headers={"Content-Type": "image/jpeg"})),
    ("truncated JPEG", 400,
     lambda c: c.post("/v1/tags", content=jpeg_bytes(640, 480)[:9000], headers={"Content-Type": "image/jpeg"})),
    ("60 MB body", 413,
     lambda c: c.post("/v1/tags", content=b"\xff" * (60 * 1024 * 1024), headers={"Content-Type": "image/jpeg"})),
    ("30 MB chunked body", 413,
     lambda c: c.post("/v1/tags", content=iter([b"\xff" * (1024 * 1024)] * 30), headers={"Content-Type": "image/jpeg"})),
    ("decompression bomb", 400, lambda c: c.post("/v1/tags", content=bomb_png(), headers={"Content-Type": "image/png"})),
    ("multipart without an image field", 422,
     lambda c: c.post("/v1/tags", files={"photo": ("a.jpg", jpeg_bytes(64, 48), "image/jpeg")})),
    ("image field as text", 422, lambda c: c.post("/v1/tags", data={"image": "not a file"}, files={"x": ("x", b"x")})),
    ("too many images", 400,
     lambda c: c.post("/v1/tags", files=[("image", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(33)])),
    ("threshold=2", 422, lambda c: c.post("/v1/tags?threshold=2", content=jpeg_bytes(64, 48),
                                          headers={"Content-Type": "image/jpeg"})),
    ("threshold=abc", 422, lambda c: c.post("/v1/tags?threshold=abc", content=jpeg_bytes(64, 48),
                                            headers={"Content-Type": "image/jpeg"})),
    ("top_k=0", 422, lambda c: c.post("/v1/tags?top_k=0", content=jpeg_bytes(64, 48),
                                      headers={"Content-Type": "image/jpeg"})),
    ("unknown model", 422, lambda c: c.post("/v1/tags?models=vgg16,resnet", content=jpeg_bytes(64, 48),
                                            headers={"Content-Type": "image/jpeg"})),
    ("unknown path", 404, lambda c: c.get("/v2/tags")),
    ("wrong method", 405, lambda c: c.get("/v1/tags")),
]


@pytest.mark.parametrize(("case", "status", "send"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_its_json_error_and_the_server_keeps_serving(
        client: httpx.Client, photos: list[Path], case: str, status: int,
        send: Callable[[httpx.Client], httpx.Response]) -> None:
    answer = send(client)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["error"] and body["error"] and "Traceback" not in body["error"]
    good = client.post("/v1/tags", content=photos[0].read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert good.status_code == 200 and good.json()["results"][0]["error"] is None


def test_error_messages_say_what_is_wrong(client: httpx.Client) -> None:
    bomb = client.post("/v1/tags", content=bomb_png(), headers={"Content-Type": "image/png"})
    assert "too many pixels" in bomb.json()["error"]
    huge = client.post("/v1/tags", content=b"\xff" * (21 * 1024 * 1024), headers={"Content-Type": "image/jpeg"})
    assert huge.json() == {"error": "request body over the limit of 20 MB"}
    model = client.post("/v1/tags?models=resnet", content=jpeg_bytes(64, 48), headers={"Content-Type": "image/jpeg"})
    assert model.json() == {"error": "unknown model 'resnet' (served: vgg16, inceptionv3, xception)"}


def test_models_health_ready_and_schema(client: httpx.Client, tiny_bundle: Path) -> None:
    models = client.get("/v1/models").json()
    assert models["served"] == ["vgg16", "inceptionv3", "xception"]
    assert models["tags"] == list(TAGS)
    assert [m["name"] for m in models["models"]] == models["served"]
    here = faster_cpu_precision(cpu_features())[0]
    assert all(m["running"]["precision"] == here for m in models["models"])
    assert models["default"] == models["served"] and models["fast"] is None
    assert {f["precision"] for f in models["models"][0]["files"]} == {"int8", "fp32"}
    assert client.get("/healthz").json() == {"status": "ok", "in_flight": 0}
    assert client.get("/readyz").json() == {"status": "ready"}
    schema = client.get("/openapi.json").json()
    assert {"/v1/tags", "/v1/models", "/healthz", "/readyz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/tags"]["post"]["requestBody"]["content"]
    assert set(body) == {"image/*", "multipart/form-data"}
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_served_models_can_be_restricted(tiny_bundle: Path, photos: list[Path]) -> None:
    with thread_server(ServeConfig(bundle=tiny_bundle, models=("xception",), workers=1)) as base:
        assert httpx.get(base + "/v1/models").json()["served"] == ["xception"]
        answer = httpx.post(base + "/v1/tags?models=vgg16", content=photos[0].read_bytes(),
                            headers={"Content-Type": "image/jpeg"})
        assert answer.status_code == 422 and "served: xception" in answer.json()["error"]
        ok = httpx.post(base + "/v1/tags", content=photos[0].read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert list(ok.json()["results"][0]["models"]) == ["xception"]


def test_api_key(tiny_bundle: Path, photos: list[Path]) -> None:
    body, jpeg = photos[0].read_bytes(), {"Content-Type": "image/jpeg"}
    with thread_server(ServeConfig(bundle=tiny_bundle, api_key=KEY, workers=1)) as base:
        missing = httpx.post(base + "/v1/tags", content=body, headers=jpeg)
        wrong = httpx.post(base + "/v1/tags", content=body, headers={**jpeg, "Authorization": "Bearer nope"})
        for answer in (missing, wrong, httpx.get(base + "/v1/models")):
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
            assert KEY not in answer.text
        assert missing.json() == {"error": "missing API key: send 'Authorization: Bearer <key>'"}
        assert wrong.json() == {"error": "wrong API key"}
        right = httpx.post(base + "/v1/tags", content=body, headers={**jpeg, "Authorization": f"Bearer {KEY}"})
        assert right.status_code == 200
        assert httpx.get(base + "/healthz").status_code == 200  # probes and the page need no key
        assert httpx.get(base + "/").status_code == 200


def _post_in_thread(url: str, files: list, out: dict[str, Any]) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.update(answer=httpx.post(url, files=files, timeout=60)))
    thread.start()
    return thread


def test_health_answers_while_the_pool_is_busy(tiny_bundle: Path, big_photos: list) -> None:
    with thread_server(ServeConfig(bundle=tiny_bundle, workers=1)) as base:
        assert httpx.get(base + "/healthz").json() == {"status": "ok", "in_flight": 0}
        busy: dict[str, Any] = {}
        thread = _post_in_thread(base + "/v1/tags", big_photos, busy)
        # /healthz answering "1 in flight" is itself the proof: it answered while the only worker was tagging
        wait_for(lambda: in_flight(base) == 1, "/healthz answering while the upload is being tagged")
        thread.join(60)
        assert busy["answer"].status_code == 200 and len(busy["answer"].json()["results"]) == BIG_PHOTOS
        assert in_flight(base) == 0


def test_a_request_over_its_timeout_gets_503_and_the_next_one_succeeds(tiny_bundle: Path, big_photos: list,
                                                                      photos: list[Path]) -> None:
    with thread_server(ServeConfig(bundle=tiny_bundle, workers=1, timeout_s=SHORT_TIMEOUT_S)) as base:
        slow = httpx.post(base + "/v1/tags", files=big_photos, timeout=60)
        assert slow.status_code == 503, slow.text
        assert slow.json() == {"error": f"not answered within {SHORT_TIMEOUT_S:g} s; try again later"}
        assert slow.headers["retry-after"]
        wait_for(lambda: in_flight(base) == 0, "the only worker finishing the request given up on")
        answer = httpx.post(base + "/v1/tags", content=photos[0].read_bytes(), headers={"Content-Type": "image/jpeg"},
                            timeout=30)
        assert answer.status_code == 200, answer.text
