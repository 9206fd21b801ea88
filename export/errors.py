"""The error every export step raises on purpose; the CLI prints its one-line message."""
from hashtag.runtime.errors import HashtagError


class ExportError(HashtagError):
    """The run folder, the dataset or a produced ONNX file is unusable, or a quality check failed."""


class ParityError(ExportError):
    """An exported graph disagrees with its Keras model beyond the tolerance."""
