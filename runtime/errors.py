"""One exception hierarchy for everything the runtime can refuse; front ends catch HashtagError."""


class HashtagError(Exception):
    """Base of every error the runtime raises on purpose; its message is one line for the user."""


class BundleError(HashtagError):
    """The model bundle (manifest.json and its ONNX files) is missing, malformed or inconsistent."""


class ImageError(HashtagError):
    """An input image cannot be read or decoded; the message names the source and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ProviderError(HashtagError):
    """The requested ONNX Runtime execution provider is not available on this machine."""


class ModelSelectionError(HashtagError):
    """A model or precision was asked for that the bundle does not contain."""


class ConfigError(HashtagError):
    """A front end (bot, server) cannot start with these settings; the message is one line for the user."""
