"""Load benchmark of the Telegram bot: N simulated users send photos through the loopback fake Bot API.

    python -m hashtag.benchmarks.bench_bot [--bundle DIR] [--users 1,10,50] [--seconds 15] [--json out.json]

The real ``hashtag bot`` process serves the users (long polling, as deployed); this process plays the Bot
API server (the fake of a source checkout's tests/fakes/telegram, enforcing Telegram's flood limits) and the
users, each sending a photo and waiting for the reply before the next (closed loop). Reported per user count:
replies/s and reply latency p50/p95 (photo sent -> reply received), next to the runtime's own ensemble
latency and throughput measured in this same run (right before and after each level, same photos, same
worker and thread settings: the machine may be shared, and each level is compared with the runtime as
fast as it was at that time).

The bot keeps to Telegram's limit of about one message per second per chat, so a single user sending
photo after photo waits for flood control most of the time. That wait is reported on its own (the bot
logs how long it held each reply; hashtag.bot.ratelimit), with the 429 answers the server gave, and the
latency target is checked on the reply latency without it.

Targets (issues 7 and 15): reply latency p50 at 1 user, flood-control wait excluded, within 1.3x of the
runtime's ensemble latency; throughput at 10+ users at least 80% of what the runtime alone sustains.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hashtag.benchmarks.photos import encoded_photos
from hashtag.benchmarks.runtime_alone import RuntimeRound, measure_runtime
from hashtag.bot.config import default_workers
from hashtag.bot.ratelimit import HELD_RE
from hashtag.bot.replies import prediction_text
from hashtag.runtime.options import provider_option, threads_option, workers_option
from hashtag.runtime.settings import BOT_API_URL_ENV, BOT_TOKEN_ENV, settings as environment
from hashtag.runtime.tagger import Tagger

if TYPE_CHECKING:  # a test double, not installed: fake_bot_api() loads it from the source checkout
    from fakes.telegram import FakeBotApi

TARGET_LATENCY_RATIO = 1.3
TARGET_THROUGHPUT_RATIO = 0.8
TOKEN = "100000:BENCH-loopback-only"  # the fake server's token; never a real one
START_TIMEOUT_S = 60
REPLY_TIMEOUT_S = 120
N_PHOTOS = 8
CHECKOUT_TESTS = Path(__file__).resolve().parents[1] / "tests"  # in a source checkout; the wheel has no tests/


@dataclass
class Level:
    """One load level: how many users, what they got and how fast; ``photo_ids`` (message ids, in the
    order of ``latencies_s``) let the bot's log say how long flood control held each reply."""

    users: int
    replies: int
    wrong: int
    seconds: float
    latencies_s: list[float]
    photo_ids: list[int]
    rejected_429: int = 0
    flood_wait_s: list[float] | None = None

    @property
    def per_s(self) -> float:
        return self.replies / self.seconds

    @property
    def net_latencies_s(self) -> list[float]:
        """Reply latencies without the time flood control held the reply."""
        waits = self.flood_wait_s or [0.0] * len(self.latencies_s)
        return [t - w for t, w in zip(self.latencies_s, waits, strict=True)]


def fake_bot_api() -> type[FakeBotApi]:
    """The loopback fake Bot API server, a test double that lives in a source checkout's tests/fakes/telegram.

    The wheel leaves tests/ out, so this benchmark runs from a source checkout only, and says so otherwise.
    """
    if not (CHECKOUT_TESTS / "fakes" / "telegram").is_dir():
        raise SystemExit("bench_bot needs a source checkout of hashtag: it plays Telegram with the fake Bot API "
                         f"server in tests/fakes/telegram, not found in {CHECKOUT_TESTS}")
    sys.path.insert(0, str(CHECKOUT_TESTS))
    from fakes.telegram import FakeBotApi

    return FakeBotApi


def flood_waits(log_text: str) -> dict[int, float]:
    """Seconds flood control held the reply to each photo (by message id), from the bot's log."""
    waits: dict[int, float] = {}
    for match in HELD_RE.finditer(log_text):
        if match["method"] == "sendMessage" and match["reply"].isdigit():
            waits[int(match["reply"])] = waits.get(int(match["reply"]), 0.0) + float(match["seconds"])
    return waits


async def load_level(api: FakeBotApi, users: int, photos: Sequence[bytes], expected: Sequence[str],
                     size: tuple[int, int], seconds: float) -> Level:
    """``users`` closed-loop users sending photos for ``seconds``; in-flight photos are awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    latencies: list[float] = []
    photo_ids: list[int] = []
    wrong = 0

    async def user(chat_id: int) -> None:
        nonlocal wrong
        i = 0
        while loop.time() < deadline:
            k = (chat_id + i) % len(photos)
            t0 = loop.time()
            message = api.send_photo(chat_id, photos[k], size=size)
            reply = await api.reply_to(message, REPLY_TIMEOUT_S)
            latencies.append(loop.time() - t0)
            photo_ids.append(message["message_id"])
            wrong += reply["text"] != expected[k]
            i += 1

    started, requests_before = loop.time(), len(api.requests)
    await asyncio.gather(*(user(users * 1000 + u) for u in range(users)))
    rejected = sum(r.status == 429 for r in api.requests[requests_before:])
    return Level(users, len(latencies), wrong, loop.time() - started, latencies, photo_ids, rejected)


def start_bot(api_url: str, bundle: Path, provider: str, workers: int, threads: int | None,
              log: Path) -> subprocess.Popen:
    """The real bot process (``python -m hashtag.bot`` = ``hashtag bot``) pointed at the fake server."""
    env = {**os.environ, BOT_TOKEN_ENV: TOKEN, BOT_API_URL_ENV: api_url}
    cmd = [sys.executable, "-m", "hashtag.bot", "--bundle", str(bundle), "--provider", provider,
           "--workers", str(workers), "--log-level", "info", "--state-file", str(log.with_name("state.sqlite3"))]
    if threads:
        cmd += ["--threads", str(threads)]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def wait_serving(api: FakeBotApi, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not api.calls("getUpdates"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the bot did not start:\n{log.read_text(errors='replace')[-3000:]}")
        await asyncio.sleep(0.05)


async def run_load(args: argparse.Namespace, server: type[FakeBotApi], tagger: Tagger, bundle: Path,
                   photos: list[bytes], expected: list[str], workers: int) -> tuple[list[RuntimeRound], list[Level], int]:
    """Start the fake server and the bot, then alternate runtime-alone rounds and load levels.

    The runtime is measured right before and after every level (in a thread, while the idle bot keeps
    its long poll open), so each level is compared with the machine as it was at that time.
    """
    rounds: list[RuntimeRound] = []
    levels: list[Level] = []

    async def runtime_round() -> None:
        rounds.append(await asyncio.to_thread(measure_runtime, tagger, photos, workers, args.seconds / 2))

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bot.log"
        async with server(TOKEN) as api:
            proc = start_bot(api.url, bundle, args.provider, workers, args.threads, log)
            try:
                await wait_serving(api, proc, log)
                await load_level(api, 1, photos, expected, args.size, 1.0)  # warm-up: connections, sessions
                await runtime_round()
                for users in args.users:
                    levels.append(await load_level(api, users, photos, expected, args.size, args.seconds))
                    print(f"  {users} user(s): {levels[-1].replies} replies", file=sys.stderr)
                    await runtime_round()
                proc.send_signal(signal.SIGINT)
                code = await asyncio.to_thread(proc.wait, 30)
            except BaseException:
                print(f"the bot's log ends:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
                raise
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            waits = flood_waits(log.read_text(errors="replace"))
    for level in levels:
        level.flood_wait_s = [waits.get(i, 0.0) for i in level.photo_ids]
    return rounds, levels, code


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def p(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(samples, q))


def report(rounds: list[RuntimeRound], levels: list[Level], exit_code: int, settings: dict[str, Any]) -> dict[str, Any]:
    """Print the table and the verdicts (each level against the runtime rounds around it); return the data."""
    all_lat = [x for r in rounds for x in r.latencies_s]
    print(f"bot load benchmark — {settings['bundle']} ({settings['models']}), provider {settings['provider']}, "
          f"{settings['workers']} worker(s), threads {settings['threads'] or 'default'}, "
          f"photos {settings['size'][0]}x{settings['size'][1]} JPEG, {os.cpu_count()} CPUs")
    print(f"runtime alone, all rounds: ensemble latency p50 {ms(p(all_lat, 50))} ms, p95 {ms(p(all_lat, 95))} ms; "
          f"throughput {statistics.fmean(r.throughput for r in rounds):.2f} img/s "
          f"(1 thread {statistics.fmean(r.sequential_per_s for r in rounds):.2f}, "
          f"{settings['workers']} threads {statistics.fmean(r.parallel_per_s for r in rounds):.2f})")
    print(f"load average {settings['load_before']} before, {settings['load_after']} after (1, 5, 15 min)")
    print("latency columns: photo sent -> reply; 'flood' is the part flood control held the reply "
          "(mean per reply), 'net' the latency without it")
    print(f"{'users':>5} {'replies':>8} {'replies/s':>10} {'p50 ms':>9} {'p95 ms':>9} {'flood ms':>9} "
          f"{'net p50':>8} {'429s':>5} | {'runtime p50':>11} {'runtime/s':>10} | {'p50 ratio':>9} "
          f"{'thr ratio':>9} {'wrong':>6}")
    rows = []
    for i, lv in enumerate(levels):
        around = rounds[i : i + 2]
        base_p50 = p([x for r in around for x in r.latencies_s], 50)
        base_thr = statistics.fmean(r.throughput for r in around)
        net_p50 = p(lv.net_latencies_s, 50)
        flood = lv.flood_wait_s or [0.0]
        row = {"users": lv.users, "replies": lv.replies, "replies_per_s": lv.per_s,
               "p50_ms": p(lv.latencies_s, 50) * 1000, "p95_ms": p(lv.latencies_s, 95) * 1000,
               "flood_wait_mean_ms": statistics.fmean(flood) * 1000, "flood_wait_total_s": sum(flood),
               "net_p50_ms": net_p50 * 1000, "net_p95_ms": p(lv.net_latencies_s, 95) * 1000,
               "answered_429": lv.rejected_429,
               "runtime_p50_ms": base_p50 * 1000, "runtime_per_s": base_thr,
               "p50_ratio": net_p50 / base_p50, "throughput_ratio": lv.per_s / base_thr,
               "wrong_replies": lv.wrong}
        rows.append(row)
        print(f"{lv.users:>5} {lv.replies:>8} {lv.per_s:>10.2f} {row['p50_ms']:>9.1f} {row['p95_ms']:>9.1f} "
              f"{row['flood_wait_mean_ms']:>9.1f} {row['net_p50_ms']:>8.1f} {lv.rejected_429:>5} | "
              f"{row['runtime_p50_ms']:>11.1f} {base_thr:>10.2f} | {row['p50_ratio']:>8.2f}x "
              f"{row['throughput_ratio']:>9.0%} {lv.wrong:>6}")
    verdicts: dict[str, bool] = {}
    single = [r for r in rows if r["users"] == 1]
    if single:
        verdicts["latency_p50_1_user"] = single[0]["p50_ratio"] <= TARGET_LATENCY_RATIO
    many = [r for r in rows if r["users"] >= 10]
    if many:
        verdicts["throughput_10plus_users"] = min(r["throughput_ratio"] for r in many) >= TARGET_THROUGHPUT_RATIO
    verdicts["all_replies_correct"] = all(r["wrong_replies"] == 0 for r in rows)
    verdicts["clean_exit_on_sigint"] = exit_code == 0
    print(f"target p50 at 1 user (net of flood control) <= {TARGET_LATENCY_RATIO}x runtime: "
          f"{_verdict(verdicts.get('latency_p50_1_user'))}; "
          f"throughput at 10+ users >= {TARGET_THROUGHPUT_RATIO:.0%} of runtime: "
          f"{_verdict(verdicts.get('throughput_10plus_users'))}; replies correct: "
          f"{_verdict(verdicts['all_replies_correct'])}; bot exit code on SIGINT: {exit_code}")
    return {"settings": settings, "runtime_rounds": [asdict(r) for r in rounds], "levels": rows,
            "verdicts": verdicts, "bot_exit_code": exit_code}


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "FAIL")


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hashtag.benchmarks.bench_bot",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle folder (default: the shipped one)")
    provider_option.add_to(parser)
    parser.add_argument("--users", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50],
                        help="comma-separated user counts (default 1,10,50)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="seconds per load level (default 15); runtime-alone rounds take half")
    parser.add_argument("--size", type=_size, default=(1280, 960),
                        help="photo size WxH (default 1280x960, Telegram's usual largest size)")
    workers_option.add_to(parser)
    threads_option.add_to(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    server = fake_bot_api()
    bundle = args.bundle or environment().bundle
    workers = args.workers or default_workers()
    photos = encoded_photos(N_PHOTOS, args.size)
    load_before = [round(x, 2) for x in os.getloadavg()]
    tagger = Tagger(bundle, provider=args.provider, threads=args.threads)
    expected = [prediction_text(tagger.predict_one(photo)) for photo in photos]
    rounds, levels, code = asyncio.run(run_load(args, server, tagger, bundle, photos, expected, workers))
    models = ", ".join(f"{m.spec.name} {m.variant.precision}" for m in tagger.models)
    settings = {"bundle": str(bundle), "models": models,
                "provider": tagger.provider, "workers": workers, "threads": args.threads, "size": list(args.size),
                "seconds": args.seconds, "load_before": load_before,
                "load_after": [round(x, 2) for x in os.getloadavg()]}
    result = report(rounds, levels, code, settings)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
