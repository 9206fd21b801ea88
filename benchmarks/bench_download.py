"""Dataset-build throughput: the concurrent downloader vs the original one-by-one download, over loopback HTTP.

Run: ``python -m hashtag.benchmarks.bench_download [--images 2000] [--small 500] [--latency-ms 30]``.

This process generates distinct JPEGs (449x299 / 299x449, what Unsplash returns for ``?w=``), serves
them from an in-process HTTP/1.1 server on 127.0.0.1 that waits ``--latency-ms`` before each response
(a CDN round trip; real Unsplash fetches take longer), writes Unsplash-style tables pointing at it, and
builds datasets in fresh child processes so each one's peak RSS is its own:

- concurrent: ``hashtag data build`` (``build_dataset``) at ``--small`` and ``--images`` photos: peak RSS
  at the two sizes shows that memory does not grow with the number of images;
- sequential: the original project's way, ``urllib.request.urlopen`` one photo after another (a new
  connection each), with the same decode and store step, at ``--images`` photos.

Nothing here imports tensorflow.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hashtag.benchmarks.memory import current_rss_mb, peak_rss_mb, reset_peak_rss

SIZES = ((449, 299), (299, 449))
TABLE_SIZE = {(449, 299): (4490, 2990), (299, 449): (2990, 4490)}  # original sizes in the table -> ?w=449/299


def generate_images(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct photo-like JPEGs: a few noisy gradients, shifted and tinted per image."""
    rng = np.random.default_rng(seed)
    bases = []
    for w, h in SIZES:
        yy, xx = np.mgrid[0:h, 0:w]
        grad = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
        bases.append(np.clip(grad + rng.normal(0, 25, grad.shape), 0, 255).astype(np.uint8))
    out = []
    for i in range(n):
        arr = np.roll(bases[i % 2], shift=(i * 7) % 97, axis=1).copy()
        arr[: 20 + i % 40, : 30 + i % 50] = (i * 37 % 256, i * 91 % 256, i * 13 % 256)
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


class LatencyServer:
    """Serves ``/img/<i>.jpg`` from memory after ``latency`` seconds, keep-alive, one thread per connection."""

    def __init__(self, images: list[bytes], latency: float) -> None:
        self.images = images
        self.latency = latency
        self.requests = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with outer._lock:
                    outer.requests += 1
                time.sleep(outer.latency)
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                try:
                    body = outer.images[int(name.split(".")[0])]
                except (ValueError, IndexError):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/img/{i}.jpg"

    def __enter__(self) -> "LatencyServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_tables(folder: Path, server: LatencyServer, n: int) -> Path:
    """Unsplash Lite-style photos.tsv000/keywords.tsv000 for the first ``n`` served images."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = ["photo_id\tphoto_url\tphoto_image_url\tphoto_width\tphoto_height"]
    keywords = ["photo_id\tkeyword\tai_service_1_confidence\tai_service_2_confidence\tsuggested_by_user"]
    for i in range(n):
        w, h = TABLE_SIZE[SIZES[i % 2]]
        photos.append(f"b{i:06d}\thttps://unsplash.com/photos/b{i:06d}\t{server.url(i)}\t{w}\t{h}")
        keywords.append(f"b{i:06d}\t{('sea', 'tree', 'nature')[i % 3]}\t99.5\t\tf")
    (folder / "photos.tsv000").write_text("\n".join(photos) + "\n")
    (folder / "keywords.tsv000").write_text("\n".join(keywords) + "\n")
    return folder


def child(mode: str, tables: Path, out: Path, workers: int) -> dict[str, Any]:
    """One measured build in this (fresh) process; prints nothing, returns the numbers."""
    from hashtag.train.dataset import BuildConfig, build_dataset, image_relpath
    from hashtag.train.download import DownloadConfig
    from hashtag.train.fetch import sized_url
    from hashtag.train.store import encode_image, write_atomically
    from hashtag.train.table_rows import KeywordFilter
    from hashtag.train.tables import select

    baseline = current_rss_mb()
    peak_is_build_only = reset_peak_rss()
    start = time.perf_counter()
    if mode == "concurrent":
        summary = build_dataset(BuildConfig(tables, out, download=DownloadConfig(workers=workers)))["summary"]
        stored, failed = summary["stored"], summary["failed"]
    else:
        stored = failed = 0
        partial = out / ".partial"
        partial.mkdir(parents=True, exist_ok=True)
        for photo in select(tables, KeywordFilter()).photos:
            try:
                with urllib.request.urlopen(sized_url(photo.source, photo.width, photo.height, 299), timeout=20) as r:
                    payload = encode_image(r.read(), 299, 90)
            except Exception:  # noqa: BLE001 - the original way: count and move on
                failed += 1
                continue
            write_atomically(payload, out / image_relpath(photo.photo_id), partial)
            stored += 1
    seconds = time.perf_counter() - start
    return {"mode": mode, "workers": workers if mode == "concurrent" else 1, "stored": stored, "failed": failed,
            "seconds": round(seconds, 2), "images_per_s": round(stored / seconds, 1),
            "rss_after_imports_mb": round(baseline or 0.0, 1), "peak_rss_mb": round(peak_rss_mb() or 0.0, 1),
            "peak_covers_build_only": peak_is_build_only,
            "tensorflow_loaded": any(m.split(".")[0] == "tensorflow" for m in sys.modules)}


def measure(mode: str, tables: Path, out: Path, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "hashtag.benchmarks.bench_download", "--child", mode, "--tables", str(tables),
           "--out", str(out), "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="photos per large build (at least 2000)")
    parser.add_argument("--small", type=int, default=500, help="photos in the small build (memory comparison)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="server wait before each response")
    parser.add_argument("--workers", type=int, default=16, help="concurrent downloader threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", choices=("concurrent", "sequential"), help=argparse.SUPPRESS)
    parser.add_argument("--tables", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.tables, args.out, args.workers)))
        return
    if args.images < 2000 or not 0 < args.small < args.images:
        parser.error("need --images >= 2000 and 0 < --small < --images")

    print(f"generating {args.images} JPEGs ...", file=sys.stderr)
    images = generate_images(args.images)
    with LatencyServer(images, args.latency_ms / 1000) as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        big = write_tables(root / "tables-big", server, args.images)
        small = write_tables(root / "tables-small", server, args.small)
        runs = []
        for mode, tables, name in (("concurrent", small, "small"), ("concurrent", big, "big"),
                                   ("sequential", big, "seq")):
            print(f"{mode} build of {len(images) if tables is big else args.small} images ...", file=sys.stderr)
            runs.append(measure(mode, tables, root / f"out-{name}", args.workers))
        requests = server.requests
    small_run, conc, seq = runs
    result = {
        "images": args.images, "small": args.small, "latency_ms": args.latency_ms,
        "image_kb_mean": round(sum(map(len, images)) / len(images) / 1024, 1), "server_requests": requests,
        "runs": runs, "speedup": round(conc["images_per_s"] / seq["images_per_s"], 2),
    }
    print(f"{args.images} images over loopback HTTP, {args.latency_ms:g} ms server latency, "
          f"{result['image_kb_mean']} kB JPEGs each")
    print(f"{'run':34s} {'img/s':>8s} {'seconds':>8s} {'stored':>7s} {'RSS at start MB':>16s} {'peak RSS MB':>12s}")
    for label, r in ((f"concurrent ({args.workers} threads), {args.small}", small_run),
                     (f"concurrent ({args.workers} threads), {args.images}", conc),
                     (f"sequential (urllib one by one), {args.images}", seq)):
        print(f"{label:34s} {r['images_per_s']:8.1f} {r['seconds']:8.2f} {r['stored']:7d} "
              f"{r['rss_after_imports_mb']:16.1f} {r['peak_rss_mb']:12.1f}")
    print(f"speedup concurrent/sequential: {result['speedup']:.1f}x; "
          f"peak RSS {small_run['peak_rss_mb']:.0f} MB at {args.small} vs "
          f"{conc['peak_rss_mb']:.0f} MB at {args.images}")
    if any(r["tensorflow_loaded"] for r in runs):
        print("warning: tensorflow was imported", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
