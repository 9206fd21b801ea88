"""Helpers for tests of the `hashtag bot` process: the process with its output in files, run against the fake
Bot API server (fakes.telegram) on loopback."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Awaitable, Callable

from fakes.telegram import FakeBotApi

TOKEN = "987654:PROC-token_Zz9-never-printed"
START_TIMEOUT = 30  # interpreter, onnxruntime and PTB imports on a busy 2-core machine
REPLY_TIMEOUT = 10
EXIT_TIMEOUT = 15


def hashtag_command() -> list[str]:
    """The installed `hashtag` console script, or the same entry point through this interpreter."""
    script = shutil.which("hashtag")
    return [script] if script else [sys.executable, "-c", "from hashtag.runtime.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BotProcess:
    """`hashtag bot ...` with the token in its environment and its output in files (never a full pipe).

    The user's data directory (the default --state-file's) is ``tmp_path/data``, never the real one.
    """

    def __init__(self, tmp_path: Path, api_url: str, args: list[str], token: str = TOKEN, name: str = "bot") -> None:
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_API_URL": api_url,
               "XDG_DATA_HOME": str(tmp_path / "data")}
        env.pop("TELEGRAM_WEBHOOK_SECRET", None)
        self.out_path, self.err_path = tmp_path / f"{name}-stdout.txt", tmp_path / f"{name}-stderr.txt"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen([*hashtag_command(), "bot", *args], env=env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)

    async def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def run_with_bot(tmp_path: Path, args: list[str], body: Callable[[FakeBotApi, BotProcess], Awaitable[None]],
                 token: str = TOKEN) -> BotProcess:
    """Start the fake server and the bot process, run ``body``; the process is killed if the body fails."""

    async def main() -> BotProcess:
        async with FakeBotApi(TOKEN) as api:
            bot = BotProcess(tmp_path, api.url, args, token)
            try:
                await body(api, bot)
            finally:
                bot.kill()
            return bot

    return asyncio.run(asyncio.wait_for(main(), START_TIMEOUT + 3 * REPLY_TIMEOUT + EXIT_TIMEOUT))


async def wait_started(api: FakeBotApi, bot: BotProcess, method: str, before: int = 0) -> None:
    """Until the bot called ``method`` (it is serving then; ``before`` calls were someone else's), failing
    fast if the process dies first."""
    async def died_or_called() -> None:
        while len(api.calls(method)) <= before:
            assert bot.proc.poll() is None, f"the bot exited early:\n{bot.output()}"
            await asyncio.sleep(0.05)

    await asyncio.wait_for(died_or_called(), START_TIMEOUT)
