"""Load benchmark of ``hashtag serve``: N concurrent HTTP clients on 127.0.0.1, next to the runtime alone.

    python -m hashtag.benchmarks.bench_serve [--bundle DIR] [--clients 1,8,32] [--seconds 10] [--modes single,ray]

Each mode starts the real server as a subprocess (``hashtag serve``, and ``hashtag serve --ray
--replicas 2`` on a local Ray instance) and sends it JPEG photos as raw ``image/jpeg`` bodies from
closed-loop clients (each waits for its answer before sending the next). Per client count: answers/s and
latency p50/p99 (request sent -> answer read), and errors (non-200 answers, transport failures or
hashtags that differ from the runtime's). The runtime alone (``Tagger.predict_one`` on the same bytes,
decoding included, with the server's thread settings) is measured in this process right before and after
every level while the server idles, so each level is compared with the machine as it was at that time.

Bounded: every level stops after ``--seconds`` or ``--max-requests`` answers, whichever comes first, and
traffic goes to 127.0.0.1 only. Targets (issue 14), single process: p50 at 1 client <= 1.15x the
runtime's; throughput at 8 clients >= 85% of the runtime's; no errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import aiohttp

from hashtag.benchmarks.envinfo import collect, hardware_line, load_average
from hashtag.benchmarks.photos import encoded_photos
from hashtag.benchmarks.runtime_alone import RuntimeRound, measure_runtime
from hashtag.benchmarks.stats import percentile
from hashtag.runtime.options import provider_option
from hashtag.runtime.providers import usable_cpus
from hashtag.runtime.settings import settings
from hashtag.runtime.tagger import Tagger

TARGET_LATENCY_RATIO = 1.15
TARGET_THROUGHPUT_RATIO = 0.85
HOST = "127.0.0.1"  # load tests talk to this machine only
START_TIMEOUT_S = {"single": 60, "ray": 240}
REQUEST_TIMEOUT_S = 120
N_PHOTOS = 8
SERVER_COMMAND = [sys.executable, "-c", "from hashtag.runtime.cli import main; main()", "serve"]


@dataclass(frozen=True)
class Mode:
    """One way of serving: its name, the server's extra arguments and its thread settings."""

    name: str
    args: tuple[str, ...]
    threads: int | None  # intra-op threads per model (per replica under Ray)
    parallel: int  # images the server tags at the same time: pool workers, or replicas


@dataclass(frozen=True)
class Level:
    """One load level: the clients, what they got and how fast."""

    clients: int
    answers: int
    errors: int
    seconds: float
    latencies_s: list[float]

    @property
    def per_s(self) -> float:
        return self.answers / self.seconds


async def load_level(session: aiohttp.ClientSession, url: str, clients: int, photos: Sequence[bytes],
                     expected: Sequence[list[str]], seconds: float, max_requests: int) -> Level:
    """``clients`` closed-loop clients for ``seconds`` or until ``max_requests`` answers; in-flight ones are awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    latencies: list[float] = []
    errors = 0

    async def client(k: int) -> None:
        nonlocal errors
        i = 0
        while loop.time() < deadline and len(latencies) + errors < max_requests:
            n = (k + i) % len(photos)
            t0 = loop.time()
            try:
                async with session.post(url, data=photos[n], headers={"Content-Type": "image/jpeg"}) as answer:
                    body = await answer.json(content_type=None)
                ok = answer.status == 200 and body["results"][0]["hashtags"] == expected[n]
            except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, ValueError):
                ok = False
            if ok:
                latencies.append(loop.time() - t0)
            else:
                errors += 1
            i += 1

    started = loop.time()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return Level(clients, len(latencies), errors, loop.time() - started, latencies)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(mode: Mode, bundle: Path, provider: str, port: int, log: Path) -> subprocess.Popen:
    """The real ``hashtag serve`` process, in its own session so it can be stopped as a whole if it hangs."""
    cmd = [*SERVER_COMMAND, "--host", HOST, "--port", str(port), "--bundle", str(bundle), "--provider", provider,
           "--log-level", "warning", *mode.args]
    if mode.threads:
        cmd += ["--threads", str(mode.threads)]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen, log: Path,
                     timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            async with session.get(base + "/readyz") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> int:
    """SIGTERM (the server drains), else kill its whole session after a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(10)


async def run_mode(mode: Mode, args: argparse.Namespace, bundle: Path, photos: list[bytes]
                   ) -> tuple[list[RuntimeRound], list[Level], int, str]:
    """Start the server for ``mode``, then alternate runtime-alone rounds and load levels; stop it."""
    tagger = Tagger(bundle, provider=args.provider, threads=mode.threads)
    expected = [tagger.predict_one(photo).hashtags for photo in photos]
    rounds: list[RuntimeRound] = []
    levels: list[Level] = []

    async def runtime_round() -> None:
        rounds.append(await asyncio.to_thread(measure_runtime, tagger, photos, mode.parallel, args.seconds / 2))

    port = free_port()
    base, url = f"http://{HOST}:{port}", f"http://{HOST}:{port}/v1/tags"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        proc = start_server(mode, bundle, args.provider, port, log)
        try:
            connector = aiohttp.TCPConnector(limit=max(args.clients))
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                await wait_ready(session, base, proc, log, START_TIMEOUT_S[mode.name])
                await load_level(session, url, 2, photos, expected, 2.0, args.max_requests)  # warm-up
                await runtime_round()
                for clients in args.clients:
                    levels.append(await load_level(session, url, clients, photos, expected, args.seconds,
                                                   args.max_requests))
                    print(f"  {mode.name}: {clients} client(s): {levels[-1].answers} answers, "
                          f"{levels[-1].errors} errors", file=sys.stderr)
                    await runtime_round()
        finally:
            code = stop_server(proc) if proc.poll() is None else proc.returncode
            tail = log.read_text(errors="replace")[-2000:]
    return rounds, levels, code, tail


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def rows_for(rounds: list[RuntimeRound], levels: list[Level]) -> list[dict[str, Any]]:
    """Each level against the runtime rounds right before and after it."""
    rows = []
    for i, lv in enumerate(levels):
        around = rounds[i : i + 2]
        base_lat = [x for r in around for x in r.latencies_s]
        base_p50, base_p99 = percentile(base_lat, 50), percentile(base_lat, 99)
        base_thr = sum(r.throughput for r in around) / len(around)
        p50 = percentile(lv.latencies_s, 50) if lv.latencies_s else float("nan")
        p99 = percentile(lv.latencies_s, 99) if lv.latencies_s else float("nan")
        rows.append({"clients": lv.clients, "answers": lv.answers, "errors": lv.errors, "seconds": lv.seconds,
                     "answers_per_s": lv.per_s, "p50_ms": p50 * 1000, "p99_ms": p99 * 1000,
                     "runtime_p50_ms": base_p50 * 1000, "runtime_p99_ms": base_p99 * 1000,
                     "runtime_per_s": base_thr, "p50_ratio": p50 / base_p50, "throughput_ratio": lv.per_s / base_thr})
    return rows


def print_mode(mode: Mode, rows: list[dict[str, Any]], exit_code: int) -> None:
    print(f"\n{mode.name}: hashtag serve {' '.join(mode.args)} (threads per model {mode.threads or 'default'}, "
          f"{mode.parallel} image(s) at a time); server exit code on SIGTERM: {exit_code}")
    print(f"{'clients':>7} {'answers':>8} {'answers/s':>10} {'p50 ms':>8} {'p99 ms':>8} | {'runtime p50':>11} "
          f"{'p99':>7} {'img/s':>7} | {'p50 ratio':>9} {'thr ratio':>9} {'errors':>6}")
    for r in rows:
        print(f"{r['clients']:>7} {r['answers']:>8} {r['answers_per_s']:>10.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} | "
              f"{r['runtime_p50_ms']:>11.1f} {r['runtime_p99_ms']:>7.1f} {r['runtime_per_s']:>7.2f} | "
              f"{r['p50_ratio']:>8.2f}x {r['throughput_ratio']:>9.0%} {r['errors']:>6}")


def verdicts(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """The issue's targets, judged on the single-process rows."""
    out: dict[str, bool] = {}
    one = [r for r in rows if r["clients"] == 1]
    if one:
        out["p50_1_client"] = one[0]["p50_ratio"] <= TARGET_LATENCY_RATIO
    eight = [r for r in rows if r["clients"] == 8]
    if eight:
        out["throughput_8_clients"] = eight[0]["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO
    out["no_errors"] = all(r["errors"] == 0 for r in rows)
    return out


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hashtag.benchmarks.bench_serve",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the shipped one)")
    provider_option.add_to(parser)  # the servers' and the runtime's
    parser.add_argument("--clients", type=_int_list, default=[1, 8, 32], help="concurrent clients (default 1,8,32)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds per load level (default 10); each runtime-alone round takes half")
    parser.add_argument("--max-requests", type=int, default=2000, help="most answers per level (default 2000)")
    parser.add_argument("--modes", default="single,ray", help="single, ray or both (default single,ray)")
    parser.add_argument("--replicas", type=int, default=2, help="Ray Serve tagger replicas (default 2)")
    parser.add_argument("--size", type=_size, default=(1280, 960), help="photo size WxH (default 1280x960)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def modes(args: argparse.Namespace) -> list[Mode]:
    """The single process with its default pool (one worker per CPU), and Ray Serve sharing the CPUs."""
    cpus = usable_cpus()
    known = {
        "single": Mode("single", (), None, cpus),
        "ray": Mode("ray", ("--ray", "--replicas", str(args.replicas)), max(1, cpus // args.replicas), args.replicas),
    }
    return [known[name.strip()] for name in args.modes.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    bundle = args.bundle or settings().bundle
    photos = encoded_photos(N_PHOTOS, args.size)
    env = collect(bundle)
    print(f"serve load benchmark — {bundle}, provider {args.provider}, photos {args.size[0]}x{args.size[1]} JPEG, "
          f"{args.seconds:g} s per level\n{hardware_line(env)}")
    result: dict[str, Any] = {"environment": env, "settings": {**vars(args), "bundle": str(bundle), "json": None,
                                                               "size": list(args.size)}, "modes": {}}
    for mode in modes(args):
        rounds, levels, code, tail = asyncio.run(run_mode(mode, args, bundle, photos))
        rows = rows_for(rounds, levels)
        print_mode(mode, rows, code)
        result["modes"][mode.name] = {"mode": asdict(mode), "levels": rows, "exit_code": code,
                                      "runtime_rounds": [asdict(r) for r in rounds],
                                      "verdicts": verdicts(rows) if mode.name == "single" else
                                      {"no_errors": all(r["errors"] == 0 for r in rows)},
                                      "server_log_tail": tail}
    single = result["modes"].get("single")
    if single:
        v = single["verdicts"]
        print(f"\ntargets (single process): p50 at 1 client <= {TARGET_LATENCY_RATIO}x runtime: "
              f"{_verdict(v.get('p50_1_client'))}; throughput at 8 clients >= {TARGET_THROUGHPUT_RATIO:.0%} of "
              f"runtime: {_verdict(v.get('throughput_8_clients'))}; no errors: {_verdict(v['no_errors'])}")
    if "ray" in result["modes"]:
        print(f"Ray Serve: no errors: {_verdict(result['modes']['ray']['verdicts']['no_errors'])}")
    result["load_average_end"] = load_average()
    print(f"load average (1/5/15 min) at start {env['load_average_start']}, at end {result['load_average_end']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
