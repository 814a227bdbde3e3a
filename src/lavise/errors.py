"""One error type for everything a user can get wrong.

The CLI prints ``LaviseError`` as a single line and exits with code 2; library
callers can catch it. Messages name the problem and the fix.
"""
from __future__ import annotations


class LaviseError(Exception):
    """A problem with the user's input or environment (bad file, unknown layer...)."""

    exit_code = 2


class DatasetError(LaviseError):
    """A dataset or annotation file cannot be read or is malformed."""


class EmbeddingError(LaviseError):
    """Word embeddings cannot be loaded or do not fit the explainer."""


class ModelError(LaviseError):
    """A model spec, weights file or layer name is wrong."""


class RunError(LaviseError):
    """A run folder is missing, incomplete or inconsistent."""
