"""A loopback fake of the Telegram Bot API server, for the bot's tests and bench_bot (never used by the bot).

``async with FakeBotApi(token) as api:`` listens on 127.0.0.1 and a free port; ``api.url`` is the bot's API URL.
Split by job:

- protocol.py: the HTTP server speaking Telegram's Bot API as python-telegram-bot uses it (``FakeBotApi``);
- users.py: the simulated users and what they send (``send_photo``, ``send_document``, ``send_text``, ...);
- faults.py: Telegram's flood control and the faults a test injects (``fail``, ``reset``, ``hold_download``);
- inspection.py: the record of every request and sent message, and waits on events (``reply_to``, ``wait_for``).

aiohttp is imported here only; it is a test/benchmark dependency, not one of the bot's.
"""
from .faults import TELEGRAM_FLOOD, FloodRules
from .inspection import RESET
from .protocol import SECRET_HEADER, FakeBotApi

__all__ = ["RESET", "SECRET_HEADER", "TELEGRAM_FLOOD", "FakeBotApi", "FloodRules"]
