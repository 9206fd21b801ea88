"""The Telegram bot front end (extra ``bot``): python-telegram-bot on top of hashtag.runtime, never tensorflow.

``hashtag bot`` (hashtag.bot.cli) builds the Application (hashtag.bot.app) whose handlers
(hashtag.bot.handlers) reply with texts from hashtag.bot.replies. Photos are tagged in this process or by a
`hashtag serve` (hashtag.bot.tagging, hashtag.bot.remote); each chat's updates are handled in order
(hashtag.bot.lanes), outgoing calls keep to Telegram's flood limits (hashtag.bot.ratelimit) and per-chat
settings survive restarts (hashtag.bot.state). The loopback fake of the Bot API server that the tests and
bench_bot talk to is a test double in a source checkout's tests/fakes/telegram (it needs aiohttp), never
imported here.
"""
