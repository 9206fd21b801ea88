"""The Telegram bot front end (extra ``bot``): python-telegram-bot on top of hashtag.runtime, never tensorflow.

``hashtag bot`` (hashtag.bot.cli) builds the Application (hashtag.bot.app) whose handlers
(hashtag.bot.handlers) reply with texts from hashtag.bot.replies. The loopback fake of the Bot API server
that tests and benchmarks talk to lives in hashtag.benchmarks.fake_bot_api (it needs aiohttp).
"""
