"""rag: cited question answering over a folder of reports."""

from rag.assistant import Assistant
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
