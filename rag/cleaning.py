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
_ENDS_SENTENCE = re.compile(r"[.!?:;\"”’)\]…]$")


def clean_text(text: str) -> str:
    """Return ``text`` with extraction artefacts repaired (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ad", "")
    text = _EMPTY_LINK.sub(r"\1", text)
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
