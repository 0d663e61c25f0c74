"""Repair text-extraction artefacts before a document's text is stored.

Reports exported from PDF carry debris that hurts both retrieval and quoting:
photo-credit lines dropped between paragraphs, footnote markers glued to words,
footnote bodies and page breaks that interrupt a sentence, and words hyphenated
across a line break.  ``clean_text`` fixes these so that the stored text reads
as the author wrote it; every offset is then taken in the cleaned text.
"""

from __future__ import annotations

import re

_SUPERSCRIPTS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_SUPER_TO_DIGIT = str.maketrans(_SUPERSCRIPTS, "0123456789")

_DEBRIS = re.compile(
    r"^(image credits?:|photo credits?:|open this photo in gallery:?$)", re.IGNORECASE
)
# A superscript run glued to the word or punctuation before it: "uncertainty.¹".
_GLUED_MARKER = re.compile(rf"(?<=[\w.,;:!?\"”’')\]])([{_SUPERSCRIPTS}]+)")
# An empty link left by a converter: "[Combat Camera](#)" -> "Combat Camera".
_EMPTY_LINK = re.compile(r"\[([^\]\n]+)\]\(#\)")
_FOOTNOTE_BODY = re.compile(rf"^([{_SUPERSCRIPTS}]+|\d{{1,3}})\s+(?=\S)")
_LINE_HYPHEN = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
# groff (``man``'s text output) breaks a word at a line end with U+2010 HYPHEN and indents the
# next line: "gen‐\n       eral".  Like PDFium's mark, it does not say whether the hyphen was
# the word's own, so it is resolved by the document's spelling (:func:`join_marked_hyphens`).
_TYPESET_HYPHEN = re.compile(r"(?<=\w)\u2010\n[ \t]*(?=\w)")
_ENDS_SENTENCE = re.compile(r"[.!?:;\"”’)\]…]$")


def clean_text(text: str) -> str:
    """Return ``text`` with extraction artefacts repaired (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ad", "")
    text = _EMPTY_LINK.sub(r"\1", text)
    if "\u2010" in text:
        text = join_marked_hyphens([_TYPESET_HYPHEN.sub("\ufffe", text)])[0]
    text = _LINE_HYPHEN.sub("", text)
    paragraphs = [_tidy(p) for p in re.split(r"\n[ \t]*\n", text)]
    paragraphs = [p for p in paragraphs if p and not _DEBRIS.match(p)]

    markers = {m.translate(_SUPER_TO_DIGIT) for p in paragraphs for m in _GLUED_MARKER.findall(p)}
    body: list[str] = []
    notes: list[str] = []
    for p in paragraphs:
        m = _FOOTNOTE_BODY.match(p)
        if markers and m and m.group(1).translate(_SUPER_TO_DIGIT) in markers and len(body) > 0:
            notes.append(f"{m.group(1).translate(_SUPER_TO_DIGIT)}. {p[m.end():]}")
        else:
            body.append(_GLUED_MARKER.sub("", p))

    body = _join_interrupted(body)
    if notes:
        body.append("Notes")
        body.extend(notes)
    return "\n\n".join(body)


def _tidy(paragraph: str) -> str:
    lines = [line.rstrip() for line in paragraph.split("\n")]
    return "\n".join(lines).strip("\n").strip()


def _join_interrupted(paragraphs: list[str]) -> list[str]:
    """Join a paragraph that stops mid-sentence with the one that finishes it."""
    out: list[str] = []
    for p in paragraphs:
        if out and p[:1].islower() and not _ENDS_SENTENCE.search(out[-1]):
            prev = out[-1]
            if re.search(r"[a-z]-$", prev):
                out[-1] = prev[:-1] + p
            else:
                out[-1] = prev + " " + p
        else:
            out.append(p)
    return out


# -- PDF pages ----------------------------------------------------------------
# Running heads and feet, page numbers and table-of-contents leaders are page
# furniture, not text: quoted, they glue onto sentences ("Chapter 3: Utilities 7
# 3.3 Invoking …").  They are found by what repeats, not by a list of phrases.

_LIGATURES = str.maketrans({"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"})
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?(?:\d{1,4}|[ivxlcdm]{1,7})(?:\s*(?:/|of)\s*\d{1,4})?$", re.IGNORECASE)
_LEADERS = re.compile(r"(?:\s?\.){5,}\s*\d{1,4}$|(?:\.\s){4,}")
_NUMBERED_HEADING = re.compile(
    r"^(?:(?:chapter|appendix|section|part)\s+[\dA-Z]+[.:]?|\d{1,2}(?:\.\d{1,3}){0,4}\.?|[A-Z]\.\d{1,3}(?:\.\d{1,3})*\.?)"
    r"\s+\S.{0,90}$", re.IGNORECASE)
# Measured on the tune split's PDF questions (156 over five PDFs, shipped models, indexes built
# from each value's text; ``python benchmarks/text_rules.py``, benchmarks/results/text_rules.json):
#: Lines at a page's top or bottom that are checked for furniture.  2, 3 and 4 give the same
#: figures to the digit (citation precision 0.709, recall 0.750, cited page 0.912).
EDGE_LINES = 3
#: An edge line recurring (numbers blanked) on at least this many pages' edges is furniture: a
#: running head of a chapter of three pages or more.  2 declines fewer unanswerable questions
#: (0.712 against 0.731); 5 scores a little higher (precision 0.726, unanswerable declined 0.750,
#: cited page 0.920, recall 0.741), one or two questions each way, and keeps running heads of
#: chapters of three or four pages, so 3 stays.
FURNITURE_PAGES = 3
#: Furniture is shorter than this; a longer recurring line is text.  60 and 240 give the same
#: figures as 120 to the digit.
FURNITURE_MAX_CHARS = 120


def _furniture_key(line: str) -> str:
    """A line with its numbers blanked, so "Chapter 2: Installing 8" and "... 9" compare equal."""
    return re.sub(r"\d+|\b[ivxlcdm]{1,7}\b", "#", line.strip().lower())


def strip_page_furniture(pages: list[str]) -> list[str]:
    """PDF pages without running heads/feet, bare page numbers and TOC leader lines;
    numbered and short headings on lines of their own; wrapped lines joined.

    An edge line (one of a page's first or last :data:`EDGE_LINES`) is furniture when,
    numbers blanked, it recurs at the edge of at least :data:`FURNITURE_PAGES` pages, is
    shorter than :data:`FURNITURE_MAX_CHARS` and does not end like a sentence, or when it is
    only a page number.
    """
    split = [[ln.strip() for ln in p.translate(_LIGATURES).replace("\r\n", "\n").replace("\r", "\n").split("\n")]
             for p in pages]
    counts: dict[str, int] = {}
    for lines in split:
        body = [ln for ln in lines if ln]
        for key in {_furniture_key(ln) for ln in body[:EDGE_LINES] + body[-EDGE_LINES:]}:
            counts[key] = counts.get(key, 0) + 1
    out = []
    for lines in split:
        body = [ln for ln in lines if ln]
        n = len(body)
        kept = []
        for i, ln in enumerate(body):
            edge = i < EDGE_LINES or i >= n - EDGE_LINES
            if edge and (_PAGE_NUMBER.match(ln) or (counts.get(_furniture_key(ln), 0) >= FURNITURE_PAGES
                                                    and len(ln) < FURNITURE_MAX_CHARS
                                                    and not re.search(r"[.!?,;]$", ln))):
                continue
            if _LEADERS.search(ln):
                continue
            kept.append(ln)
        out.append(_paragraphs(kept))
    return join_marked_hyphens(out)


#: What PDFium puts where a line ends in a hyphen (U+FFFE; ``\x02`` in older builds).
_HYPHEN_MARKS = ("\ufffe", "\x02")
_MARKED = re.compile(r"(\w+)[\ufffe\x02]\s*(\w+)")
_WORDS = re.compile(r"\w+(?:-\w+)*")


def join_marked_hyphens(pages: list[str]) -> list[str]:
    """Resolve PDFium's line-break hyphen marks: "reposi|tory" becomes "repository", but
    "non|empty" stays "non-empty" when the document writes "non-empty" elsewhere more often
    than "nonempty" (see ``resolve`` for words it spells neither way).

    The mark does not say whether the hyphen was the typesetter's or the author's; the
    document's own spelling of the same word elsewhere mostly does.  Measured on the QA
    collection's ten PDFs (``eval/corpora``): 559 marks, 447 of them in words the document
    also spells whole (415 joined, 32 hyphenated); of the 112 others, read one by one,
    about one in seven is resolved wrongly ("check-sum", "commaseparated"), where leaving
    the mark split every one of them into two tokens.
    """
    if not any(m in p for p in pages for m in _HYPHEN_MARKS):
        return pages
    counts: dict[str, int] = {}
    for p in pages:
        for w in _WORDS.findall(_MARKED.sub(" ", p)):  # the document's words, split ones left out
            counts[w.lower()] = counts.get(w.lower(), 0) + 1

    def resolve(m: re.Match[str]) -> str:
        left, right = m.group(1), m.group(2)
        hyphenated = counts.get(f"{left}-{right}".lower(), 0)
        joined = counts.get(f"{left}{right}".lower(), 0)
        if hyphenated != joined:
            return f"{left}-{right}" if hyphenated > joined else left + right
        # Spelled neither way: a hyphen before a digit or capital ("UTF-8") or between two
        # words the document uses on their own ("network-mounted", "on-the-fly") is the
        # author's; any other is the typesetter's ("charac-ter", "Com-mittee").
        if right[0].isdigit() or right[0].isupper() or left[-1].isdigit():
            return f"{left}-{right}"
        if counts.get(left.lower(), 0) and counts.get(right.lower(), 0):
            return f"{left}-{right}"
        return left + right

    out = []
    for p in pages:
        p = _MARKED.sub(resolve, p)
        out.append(p.replace("\ufffe", "").replace("\x02", ""))
    return out


def _paragraphs(lines: list[str]) -> str:
    """Join wrapped lines into paragraphs; headings and short last lines end one."""
    if not lines:
        return ""
    width = sorted(len(ln) for ln in lines)[len(lines) * 3 // 4]  # a full line's length
    paras: list[list[str]] = [[]]
    for i, ln in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        heading = bool(_NUMBERED_HEADING.match(ln)) and not re.search(r"[.,;:]$", ln) and len(ln.split()) <= 12
        if heading and paras[-1]:
            paras.append([])
        paras[-1].append(ln)
        short = len(ln) < 0.6 * width
        ends = bool(re.search(r"[.!?:)\]”\"']$", ln))
        if heading or (short and nxt[:1].isupper() and (ends or len(ln.split()) <= 8)):
            paras.append([])
    text = "\n\n".join(_join_lines(p) for p in paras if p)
    return text


def _join_lines(lines: list[str]) -> str:
    out = lines[0]
    for ln in lines[1:]:
        if re.search(r"[a-z]-$", out) and ln[:1].islower():
            out = out[:-1] + ln  # a word hyphenated at the line end
        elif out.endswith(_HYPHEN_MARKS):
            out += ln  # PDFium's mark of a hyphen at a line break: resolved by join_marked_hyphens
        else:
            out += " " + ln
    return out
