"""``python -m hashtag.bot``: the same as ``hashtag bot``."""
from hashtag.bot.cli import bot

if __name__ == "__main__":
    bot(prog_name="hashtag bot")
