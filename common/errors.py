"""The project's own error types: each carries a one-line message meant for a person.

Command lines catch :class:`VAEGANError` and print its message; anything else is a bug.
"""


class VAEGANError(Exception):
    """Base class of every error the project reports to a user."""


class CorruptFileError(VAEGANError):
    """A compressed file is truncated, damaged, or not one of ours."""


class ModelMismatchError(VAEGANError):
    """A compressed file was written by a different model than the one given."""


class CheckpointError(VAEGANError):
    """A checkpoint is missing, unreadable, or not what the caller expected."""


class ImageError(VAEGANError):
    """An input image cannot be read or converted."""


class DataError(VAEGANError):
    """A dataset folder is missing or empty."""
