"""The errors hashtag.train raises on purpose; front ends catch HashtagError and print the one-line message."""
from hashtag.runtime.errors import HashtagError


class TrainError(HashtagError):
    """Building a dataset, training or evaluating cannot go on; the message says what to fix."""


class SettingsError(TrainError, ValueError):
    """A setting is unknown, out of range or does not fit the data, found before any work starts.

    Also a ValueError, because it is one: code that validates arguments expects that type.
    """
