"""What kind of value a question asks for, and whether a sentence states one.

"How many …?" needs a number, "When …?" a date, "Since which version …?" a
version, "Who …?" a person, "Which option/file/command …?" a name.  The patterns
are English question grammar and value shapes, not words of any document; how
much a sentence's holding the asked-for kind counts is learned (:mod:`rag.train`).
"""

from __future__ import annotations

import re

KINDS = ("number", "date", "version", "person", "name")

_NUMBER_WORDS = (r"(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
                 r"thirty|forty|fifty|sixty|hundred|thousand|million|billion|dozen|half|twice|double|single)")
_NUMBER = re.compile(rf"(?<![\w.-])(?:[$€£]?\d[\d,.]*(?:\s?(?:%|per[ -]cent|[kmgt]i?b|bytes?|-?billion|-?million))?"
                     rf"|{_NUMBER_WORDS})(?![\w-]*\d)", re.IGNORECASE)
_MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(rf"\b(?:1[5-9]\d\d|20\d\d)\b|\b{_MONTHS}\b|\b\d{{4}}-\d\d-\d\d\b")
_VERSION = re.compile(r"\b(?:v|version\s+|release\s+)?\d+\.\d+(?:\.\d+)*[a-z]?\b|\b(?:version|release)\s+\d+\b|"
                      r"\b[A-Z][\w+-]*\s\d{1,3}\b")
_PERSON = re.compile(r"\b[A-Z][a-z]+(?:(?:\s+|-)(?:[A-Z]\.\s*)*(?:van |de |von )?[A-Z][a-zA-Z'’]+)+\b|"
                     r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
# Code-like or proper tokens: --option, file.ext, /path, snake_case, CamelCase, 'quoted', Capitalised.
_NAME = re.compile(r"(?:--?[a-zA-Z][\w-]*|[\w.-]*/[\w./<>-]+|\b\w+\.\w{1,5}\b|\b\w+_\w+\b|"
                   r"\b[a-z]+[A-Z]\w*\b|[‘'\"“`][^‘'\"“”`’]{1,40}[’'\"”`]|(?<=\s)[A-Z][\w-]+)")
_YEAR = re.compile(r"(?:1[5-9]\d\d|20\d\d)")
_TIME_WORD = re.compile(rf"\b(?:in|since|until|till|by|from|before|after|during|of|{_MONTHS}(?: \d{{1,2}},?)?)\s+$",
                        re.IGNORECASE)

#: English auxiliary verbs: a question's verb, never a word that describes what is asked.
AUXILIARIES = ("does", "do", "did", "is", "are", "was", "were", "can", "could", "should", "will", "would",
               "has", "have", "had", "must")

# Words between the question word and the noun that says what is asked: "which Node.js
# version", "what is the highest debhelper compatibility level" (not an auxiliary verb:
# "what does setting X do" asks for no name).
_MODIFIER = rf"(?:(?!(?:{'|'.join(AUXILIARIES)})\b)[\w.+-]+ )"
_UP_TO_3 = _MODIFIER + "{0,3}"
_UP_TO_2 = _MODIFIER + "{0,2}"

_ASKS = [
    ("date", re.compile(r"^(?:when|since when|until when)\b|\b(?:what|which) (?:is the |was the )?" + _UP_TO_3
                        + r"(?:year|date|month|day)\b|"
                        r"\bin (?:what|which) year\b|\bon what date\b|\bhow long ago\b")),
    ("version", re.compile(r"\b(?:what|which) " + _UP_TO_3 + r"(?:version|release)\b|\bsince (?:what|which) \w+\b|"
                           r"\bversion number\b")),
    ("number", re.compile(r"\bhow (?:many|much|long|large|big|often|far|old|high|fast|small)\b|"
                          r"\b(?:what|which) (?:is the |are the )?" + _UP_TO_3 + r"(?:number|amount|size|limit|maximum|"
                          r"minimum|percentage|share|proportion|count|length|cost|price|fee|rate|total|sum|"
                          r"value|port|width|depth|threshold|range|distance|height|weight|capacity|duration|"
                          r"timeout|speed|frequency|temperature|volume|level|ratio|population|age|"
                          r"mode|permissions?|budget|salary|revenue|score|interval)\b|\bnumeric value\b")),
    ("person", re.compile(r"(?:^|,\s*)who\b|\bwhich (?:person|people|author|individual|developer|maintainer)s?\b|"
                          r"\bwhose\b|\b(?:name|names) of the (?:person|author|people)\b|"
                          r"\bnames? of (?:the )?\w+ who\b")),
    ("name", re.compile(r"\b(?:what|which) (?:is the )?" + _UP_TO_2 + r"(?:name|option|command|function|file|directory|folder|"
                        r"program|package|tool|variable|flag|argument|field|keyword|macro|utility|library|format|"
                        r"environment variable|setting|license|licence|section|mailing list|address|url|"
                        r"extension|suffix|prefix)\b|\b(?:is|be|was) (?:called|named)\b|"
                        r"\b(?:what|which) " + _UP_TO_3 + r"(?:compan(?:y|ies)|organi[sz]ations?|firms?|countr(?:y|ies)|"
                        r"cit(?:y|ies))\b")),
]


def expected_type(question: str) -> str | None:
    """One of :data:`KINDS` when the question asks for that kind of value, else None."""
    q = " ".join(question.lower().split())
    # "When X happens, does/what …?" asks about the main clause, not for a date.
    q = re.sub(r"^(?:when|if|once|after|before)\b[^,?]*,\s*", "", q)
    for kind, pattern in _ASKS:
        if pattern.search(q):
            return kind
    return None


def _matches(kind: str, text: str) -> list[re.Match[str]]:
    pattern = {"number": _NUMBER, "date": _DATE, "version": _VERSION, "person": _PERSON, "name": _NAME}[kind]
    found = list(pattern.finditer(text))
    if kind == "number":
        # "automated in 1994" states when, not how much: a year after a time word is a date.
        found = [m for m in found if not (_YEAR.fullmatch(m.group().rstrip(".,"))
                                          and _TIME_WORD.search(text[max(0, m.start() - 24):m.start()]))]
    return found


def values(kind: str, text: str) -> set[str]:
    """The values of ``kind`` stated in ``text`` (lower-cased)."""
    found = {m.group().strip().lower() for m in _matches(kind, text)}
    if kind == "date":
        found |= {m.group().lower() for m in _NUMBER.finditer(text) if re.fullmatch(r"\d{4}", m.group())}
    return found


def value_spans(kind: str, text: str) -> list[tuple[int, int]]:
    """Character spans of the values of ``kind`` in ``text``."""
    return [m.span() for m in _matches(kind, text)]


def has_type(sentence: str, kind: str | None, question: str = "") -> bool:
    """Whether ``sentence`` states a value of ``kind`` that the question does not already give."""
    if kind is None:
        return True
    asked = values(kind, question)
    asked_words = set(re.findall(r"\w+", question.lower()))
    for v in values(kind, sentence) - asked:
        if kind in ("person", "name") and set(re.findall(r"\w+", v)) <= asked_words:
            continue
        return True
    return False
