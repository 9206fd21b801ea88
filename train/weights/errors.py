"""The one error this package raises on purpose; front ends catch HashtagError and print one line."""
from hashtag.runtime.errors import HashtagError


class WeightsError(HashtagError):
    """ImageNet weights could not be obtained, verified or mapped onto the Keras architecture."""
