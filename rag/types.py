"""Plain data types shared by every layer: documents, chunks, hits, citations, answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PageSpan:
    """Characters ``[start, end)`` of a document's text lie on ``page`` (1-based)."""

    page: int
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    """A loaded file: normalised text plus where each character came from."""

    id: str
    source: str
    title: str
    text: str
    pages: tuple[PageSpan, ...]
    content_hash: str
    metadata: dict[str, str] = field(default_factory=dict)

    def page_at(self, offset: int) -> int:
        """The page that holds character ``offset``."""
        for span in self.pages:
            if span.start <= offset < span.end:
                return span.page
        return self.pages[-1].page if self.pages else 1


@dataclass(frozen=True)
class Chunk:
    """A span of a document's text; ``text == document.text[char_start:char_end]``."""

    id: str
    doc_id: str
    source: str
    title: str
    text: str
    char_start: int
    char_end: int
    page_start: int
    page_end: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Chunk":
        return cls(**data)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its fused score, 1-based rank and per-method scores."""

    chunk: Chunk
    score: float
    rank: int
    dense_score: float | None = None
    lexical_score: float | None = None


@dataclass(frozen=True)
class Citation:
    """A marker ``[n]`` in an answer and the quote of the passage that supports it.

    ``char_start``/``char_end`` locate ``quote`` in the document's stored text;
    ``doc_hash`` is that text's content hash.  ``status`` says whether the quote still
    stands where it was cited (see :mod:`rag.anchoring`): ``current`` (same document),
    ``moved`` (the document changed, the quote is found again at new offsets),
    ``changed`` (the quote is no longer in the document) or ``removed`` (the document is
    no longer indexed).
    """

    marker: int
    chunk_id: str
    source: str
    title: str
    page: int
    char_start: int
    char_end: int
    quote: str
    support: float
    doc_hash: str = ""
    status: str = "current"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Citation":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Answer:
    """The assistant's reply: text with markers, citations, the passages it saw."""

    question: str
    text: str
    citations: list[Citation]
    passages: list[Hit]
    abstained: bool
    backend: str
    timings: dict[str, float] = field(default_factory=dict)
    notice: str = ""
    #: Sentences the generator wrote, how many the check kept, how many it re-cited.
    checks: dict[str, int] = field(default_factory=dict)
    #: What retrieval searched for: the question, or a follow-up rewritten to stand on its own.
    searched: str = ""

    def __post_init__(self) -> None:
        self.searched = self.searched or self.question

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "searched": self.searched,
            "text": self.text,
            "abstained": self.abstained,
            "backend": self.backend,
            "notice": self.notice,
            "citations": [c.to_dict() for c in self.citations],
            "passages": [
                {
                    "rank": h.rank,
                    "score": h.score,
                    "chunk_id": h.chunk.id,
                    "source": h.chunk.source,
                    "title": h.chunk.title,
                    "page": h.chunk.page_start,
                    "char_start": h.chunk.char_start,
                    "char_end": h.chunk.char_end,
                    "text": h.chunk.text,
                }
                for h in self.passages
            ],
            "timings": dict(self.timings),
            "checks": dict(self.checks),
        }
