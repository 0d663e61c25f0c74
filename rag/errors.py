"""Errors raised by rag.

Every error carries a message that says what went wrong and how to fix it::

    RagError
    ├── ConfigError            a setting is missing or invalid
    ├── LoaderError            a file cannot be read as a document
    │   └── UnsupportedFormatError
    ├── IndexNotFoundError     no index at the given directory
    ├── IndexMismatchError     the index was built by another embedder, dim or format
    ├── UnknownBackendError    a generator name that is not registered
    ├── QuestionError          an empty or over-long question
    └── GenerationError        an LLM backend failed or timed out
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error rag raises on purpose."""


class ConfigError(RagError):
    """A setting is missing or invalid."""


class LoaderError(RagError):
    """A file cannot be turned into a document."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsupportedFormatError(LoaderError):
    """The file's type is not one rag can read."""


class IndexNotFoundError(RagError):
    """No index exists at the given directory."""


class IndexMismatchError(RagError):
    """The index on disk was built with another embedder, dimension or format."""


class StoreError(RagError):
    """The engine that holds the index (a Milvus server, say) failed or cannot be reached."""


class UnknownBackendError(RagError):
    """A generator backend name that is not in the registry."""


class QuestionError(RagError):
    """The question is empty or too long."""


class GenerationError(RagError):
    """An LLM backend failed, timed out or returned nothing usable."""
