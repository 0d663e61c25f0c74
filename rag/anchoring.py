"""Find a saved citation's quote again after its document was edited and re-indexed.

A citation records its document's content hash, the quote and its character offsets.
Against the index as it is now:

- same content hash: ``current``, nothing moves;
- the quote is found again (exactly, then ignoring differences of whitespace and of
  words hyphenated across lines): ``moved``, with the new offsets and page (of several
  occurrences, the one nearest the old offset);
- the quote is not in the new text: ``changed`` (offsets kept as they were);
- the document is no longer indexed: ``removed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from rag.types import Chunk, Citation

STATUSES = ("current", "moved", "changed", "removed")

#: What the interface says for each status.
STATUS_TEXT = {
    "current": "",
    "moved": "the document changed; the quote was found again",
    "changed": "the document changed; this quote is no longer in it",
    "removed": "the document is no longer in the index",
}


@dataclass(frozen=True)
class IndexedDocument:
    """A document's text as the index holds it, with its hash and pages."""

    source: str
    content_hash: str
    text: str
    page_spans: tuple[tuple[int, int, int], ...]   # (page, start, end)
    title: str = ""

    def page_at(self, offset: int) -> int:
        for page, start, end in self.page_spans:
            if start <= offset < end:
                return page
        return self.page_spans[-1][0] if self.page_spans else 1

    @classmethod
    def from_chunks(cls, source: str, content_hash: str, chunks: list[Chunk],
                    page_spans: list[list[int]] | None = None, title: str = "") -> "IndexedDocument":
        """The document's text put back together from its (overlapping) chunks; characters
        no chunk covers (whitespace between chunks) become spaces."""
        size = max((c.char_end for c in chunks), default=0)
        buf = [" "] * size
        for c in chunks:
            buf[c.char_start:c.char_end] = c.text
        return cls(source, content_hash, "".join(buf), tuple(tuple(p) for p in (page_spans or [])),  # type: ignore[misc]
                   title)


_LINE_HYPHEN = re.compile(r"(?<=\w)-[ \t]*\n\s*(?=\w)")


def _normalised(text: str) -> tuple[str, list[int]]:
    """``text`` with words hyphenated across a line break joined and whitespace runs made one
    space, and for each character of the result its offset in ``text``."""
    out: list[str] = []
    where: list[int] = []
    i = 0
    while i < len(text):
        m = _LINE_HYPHEN.match(text, i) if text[i] == "-" else None
        if m:
            i = m.end()
            continue
        if text[i].isspace():
            j = i
            while j < len(text) and text[j].isspace():
                j += 1
            if out and out[-1] != " ":
                out.append(" ")
                where.append(i)
            i = j
            continue
        out.append(text[i])
        where.append(i)
        i += 1
    return "".join(out), where


def _nearest(text: str, quote: str, around: int) -> int | None:
    best = None
    start = text.find(quote)
    while start != -1:
        if best is None or abs(start - around) < abs(best - around):
            best = start
        start = text.find(quote, start + 1)
    return best


def find_quote(text: str, quote: str, around: int = 0) -> tuple[int, int] | None:
    """Offsets of ``quote`` in ``text`` (nearest ``around``), exact or tolerant, or None."""
    if not quote.strip():
        return None
    exact = _nearest(text, quote, around)
    if exact is not None:
        return exact, exact + len(quote)
    norm_text, where = _normalised(text)
    norm_quote, _ = _normalised(quote.strip())
    hit = _nearest(norm_text, norm_quote, around)
    if hit is None:
        return None
    return where[hit], where[hit + len(norm_quote) - 1] + 1


def reanchor(citation: Citation, document: IndexedDocument | None) -> Citation:
    """``citation`` with its status (and, when moved, offsets and page) against ``document``,
    the indexed document of the same source (None when it is no longer indexed)."""
    if document is None:
        return replace(citation, status="removed")
    if citation.doc_hash and document.content_hash == citation.doc_hash:
        return replace(citation, status="current")
    found = find_quote(document.text, citation.quote, citation.char_start)
    if found is None:
        return replace(citation, status="changed")
    start, end = found
    return replace(citation, status="moved", char_start=start, char_end=end, page=document.page_at(start),
                   doc_hash=document.content_hash)
