"""Split a document into overlapping chunks of whole sentences, headings first.

Pure functions: ``chunk_document(doc, size, overlap) -> list[Chunk]``.  A chunk
never ends mid-sentence unless one sentence alone is longer than ``size``; a
heading starts a new chunk; ``chunk.text == doc.text[chunk.char_start:chunk.char_end]``.
"""

from __future__ import annotations

import re

from rag.sentences import paragraph_spans, sentence_spans
from rag.types import Chunk, Document

#: A one-line paragraph of at most this many words, not ending like a sentence, is a heading.
#: Measured on all 476 tune questions (``python benchmarks/text_rules.py``): 6, 12 and 20 give
#: recall@5 0.960, 0.961, 0.958, citation precision 0.738, 0.732, 0.729, recall 0.713, 0.716,
#: 0.716 and unanswerable declined 0.753, 0.747, 0.740: flat, within a question or two.
HEADING_MAX_WORDS = 12


def _is_heading(text: str, start: int, end: int, is_last: bool) -> bool:
    para = text[start:end]
    if is_last or "\n" in para.strip():
        return False
    if para.lstrip().startswith("#"):
        return True
    words = para.split()
    return 0 < len(words) <= HEADING_MAX_WORDS and not re.search(r"[.!?,;:\"”’)]$", para)


def _units(text: str, size: int) -> list[tuple[int, int, bool]]:
    """(start, end, starts_section) for each sentence, long sentences cut at spaces."""
    paragraphs = paragraph_spans(text)
    units: list[tuple[int, int, bool]] = []
    for i, (p_start, p_end) in enumerate(paragraphs):
        heading = _is_heading(text, p_start, p_end, i == len(paragraphs) - 1)
        for j, (s_start, s_end) in enumerate(sentence_spans(text, p_start, p_end)):
            first = heading and j == 0
            for k, (a, b) in enumerate(_cut_long(text, s_start, s_end, size)):
                units.append((a, b, first and k == 0))
    return units


def _cut_long(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    while end - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        if cut <= start:
            cut = start + size
        piece_end = cut
        while piece_end > start and text[piece_end - 1].isspace():
            piece_end -= 1  # a run of spaces before the cut stays out of the piece
        pieces.append((start, piece_end))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def chunk_spans(text: str, size: int = 900, overlap: int = 150) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each chunk of ``text``."""
    if size <= 0 or overlap < 0 or overlap >= size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    units = _units(text, size)
    spans: list[tuple[int, int]] = []
    current: list[tuple[int, int, bool]] = []

    def close() -> None:
        if current:
            spans.append((current[0][0], current[-1][1]))

    for unit in units:
        start, end, section = unit
        if current:
            too_long = end - current[0][0] > size
            new_section = section and current[-1][1] - current[0][0] >= size // 4
            if too_long or new_section:
                close()
                carried: list[tuple[int, int, bool]] = []
                if not new_section:
                    for prev in reversed(current[1:]):
                        if current[-1][1] - prev[0] > overlap or end - prev[0] > size:
                            break
                        carried.insert(0, prev)
                current = carried
        current.append(unit)
    close()
    return spans


def chunk_document(doc: Document, size: int = 900, overlap: int = 150) -> list[Chunk]:
    """Split ``doc`` into :class:`Chunk` objects (see the module docstring)."""
    chunks = []
    for i, (start, end) in enumerate(chunk_spans(doc.text, size, overlap)):
        chunks.append(
            Chunk(
                id=f"{doc.id}-{i:04d}",
                doc_id=doc.id,
                source=doc.source,
                title=doc.title,
                text=doc.text[start:end],
                char_start=start,
                char_end=end,
                page_start=doc.page_at(start),
                page_end=doc.page_at(end - 1),
            )
        )
    return chunks
