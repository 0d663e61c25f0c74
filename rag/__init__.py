"""rag: cited question answering over a folder of reports."""

from typing import TYPE_CHECKING, Any

from rag.errors import (
    ConfigError,
    GenerationError,
    IndexMismatchError,
    IndexNotFoundError,
    LoaderError,
    QuestionError,
    RagError,
    UnknownBackendError,
    UnsupportedFormatError,
)
from rag.types import Answer, Chunk, Citation, Document, Hit

__all__ = [
    "Answer",
    "Assistant",
    "Chunk",
    "Citation",
    "ConfigError",
    "Document",
    "GenerationError",
    "Hit",
    "IndexMismatchError",
    "IndexNotFoundError",
    "LoaderError",
    "QuestionError",
    "RagError",
    "UnknownBackendError",
    "UnsupportedFormatError",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from rag.assistant import Assistant


def __getattr__(name: str) -> Any:
    # The assistant pulls in the embedding model's libraries; the loaders, the QA tools
    # and the CLI's help should not pay for that import.
    if name == "Assistant":
        from rag.assistant import Assistant

        return Assistant
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
