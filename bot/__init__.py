"""The Telegram bot front end (extra ``bot``): python-telegram-bot on top of hashtag.runtime, never tensorflow.

``hashtag bot`` (hashtag.bot.cli) builds the Application (hashtag.bot.app) whose handlers
(hashtag.bot.handlers) reply with texts from hashtag.bot.replies. hashtag.bot.fake_api is a loopback
fake of the Bot API server for tests and benchmarks; it needs aiohttp and the bot never imports it.
"""
