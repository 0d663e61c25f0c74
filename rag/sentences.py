"""Sentence and paragraph boundaries as character offsets.

Own code rather than a library splitter because every span must map back to
the stored text exactly (``text[start:end]``); the splitters we tried return
stripped strings and leave offsets to ``str.find``, which is wrong on repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "no", "vs", "etc", "e.g", "i.e",
    "fig", "figs", "vol", "pp", "p", "inc", "ltd", "co", "corp", "dept", "gen", "col",
    "lt", "capt", "cpl", "sgt", "maj", "adm", "gov", "sen", "rep", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "approx", "cf", "al",
    # Abbreviations that a lower-case word often follows ("incl. the", "Ph.D. students").
    "ph.d", "ca", "resp", "incl", "esp", "viz", "ed", "eds", "ch", "sec", "art", "para", "op", "cit",
    "ibid", "nos", "min", "max", "cca", "approx", "ref", "refs", "eq", "eqs", "ex",
}
# A candidate end: terminal punctuation, optional closing quotes/brackets, then space.
_END = re.compile(r"[.!?…]+[\"”’')\]]*(?:</[a-zA-Z][a-zA-Z0-9]*>)*(?=\s+)")
# What may start the next sentence: a capital or digit (after an opening quote or bracket),
# a lower-case word (text that ignores capitals, or a fragment pasted after a sentence), or
# markup and structure: a tag, a brace, a table cell, a heading, a Markdown image or link.
_NEXT_START = re.compile(r"\s+(?:[\"“‘'(\[]?[A-Z0-9¡¿]|[^\W\d_]|<[a-zA-Z!/|]|[{|#]|!?\[)")
# A line break ends a sentence before a line of structure (table row, heading, tag, brace,
# quote mark, list bullet) and after a line that ends one (``|``, ``}``, ``>``).
_LINE_BREAK = re.compile(r"[ \t]*\n(?=[ \t]*(?:[|#<{>]|[-*+•][ \t]|\d{1,3}[.)][ \t]))|(?<=[|}>])[ \t]*\n")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def paragraph_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the non-blank paragraphs (blank-line separated) in ``text[start:end]``."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _PARAGRAPH.finditer(text, start, end):
        spans.extend(_trimmed(text, pos, m.start()))
        pos = m.end()
    spans.extend(_trimmed(text, pos, end))
    return spans


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences in ``text[start:end]``; paragraph breaks always end one."""
    out: list[tuple[int, int]] = []
    for p_start, p_end in paragraph_spans(text, start, end):
        out.extend(_split_paragraph(text, p_start, p_end))
    return out


def chunk_sentences(text: str) -> list[str]:
    """The sentences of ``text`` as strings (what the index stores a vector for)."""
    return [text[s:e] for s, e in sentence_spans(text)]


def _split_paragraph(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    pos = start
    cuts = [(m.end(), m) for m in _END.finditer(text, start, end)]
    cuts += [(m.start(), None) for m in _LINE_BREAK.finditer(text, start, end)]
    for cut, m in sorted(cuts, key=lambda c: c[0]):
        if cut <= pos:
            continue
        if m is not None:
            if not _NEXT_START.match(text, m.end(), end):
                continue
            if _is_abbreviation(text, pos, m.start(), m.group()):
                continue
        yield from _trimmed(text, pos, cut)
        pos = cut
    yield from _trimmed(text, pos, end)


def _is_abbreviation(text: str, sent_start: int, dot: int, punct: str) -> bool:
    punct = re.sub(r"</[a-zA-Z][a-zA-Z0-9]*>", "", punct)
    if not punct.startswith(".") or len(punct.rstrip("\"”’')]")) > 1:
        return False
    word_start = dot
    while word_start > sent_start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip("(\"“‘'[").lower()
    if word.isdigit() and word_start == sent_start:
        return True  # a list or note number: "2. U.S. Department ..."
    if word in _ABBREVIATIONS:
        return True
    # Initials and dotted acronyms: "J.", "U.S", "J.D".
    return bool(re.fullmatch(r"(?:[a-z]\.)*[a-z]", word))


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if start < end else []
