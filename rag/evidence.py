"""Rank the sentences of retrieved passages as evidence for a question.

Used by the extractive generator (to choose what to quote), the abstention
decision (to judge whether any sentence answers) and the support check (to
find the quote that backs an answer sentence).  Each sentence is scored by
MiniLM similarity, coverage of the question's key terms, and whether it holds
the kind of thing the question asks for (a number, a date, a name).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from rag.embeddings import Embedder
from rag.guard import is_instruction
from rag.lexical import tokenize
from rag.sentences import sentence_spans
from rag.types import Hit

# Words that say what kind of answer is wanted but name nothing in the documents.
_QUESTION_WORDS = frozenset(tokenize(
    "what which who whom whose when where why how many much does did do is are was were "
    "according report reports document documents text article op-ed author say says said mention "
    "mentioned describe described explain kind type name named give list main one two "
    "per cent percent year years"
)) | {"op-ed", "according"}

_NUMBER_WORDS = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand|million|billion|dozen|half|twice|double)"
_NUMBER = re.compile(rf"(?<![\w-])(?:\$?\d[\d,.]*(?:\s?(?:%|per[ -]cent|-?billion|-?million))?|{_NUMBER_WORDS})(?![\w-]*\d)", re.IGNORECASE)
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_MONTH = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\b")
_NAME = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:[A-Z]\.\s*)*[A-Z][a-z]+)+\b")
_DAY = re.compile(r"\b([0-3]?\d(?:st|nd|rd|th)?\s+(?:January|February|March|April|May|June|July|August|September|October|November|December)|(?:January|February|March|April|May|June|July|August|September|October|November|December)\s+[0-3]?\d\b)")
_ROLE = re.compile(r"\b(minister|president|prime minister|secretary|head|chief|director|panellist|speaker|author|rapporteur|vice-president)s?\b", re.IGNORECASE)


def expected_type(question: str) -> str | None:
    """'number', 'date', 'person' or 'name' when the question asks for one, else None."""
    q = question.lower().strip()
    if re.search(r"\bhow (many|much)\b|\bwhat (percentage|share|amount|number|sum|proportion)\b|\bhow large\b", q) \
            or re.search(r"^(what|which)\b[^?]*\b(cost|budget|price|rate|amount|figure|total|tally)\b", q):
        return "number"
    if re.search(r"^(when|since when|until when)\b|\bwhat (year|date|month|day)\b|\bin which year\b|"
                 r"\bby what (year|date)\b|\bexact date\b|\bon what date\b", q):
        return "date"
    if re.search(r"^who (is|was|wrote|said|leads|led|heads|headed|announced|signed|chaired)\b|"
                 r"\bwhich (person|minister|official|individual)\b", q):
        return "person"
    if re.search(r"\b(be called|is called|was called|be named|what is the name|what was the name|"
                 r"the names? of)\b", q):
        return "name"
    return None


def _values(kind: str, text: str) -> set[str]:
    if kind == "number":
        return {m.group().lower().strip() for m in _NUMBER.finditer(text)}
    if kind == "date":
        return {m.group() for m in _YEAR.finditer(text)} | {m.group() for m in _MONTH.finditer(text)} | \
            {m.group() for m in _DAY.finditer(text)}
    names = {m.group() for m in _NAME.finditer(text)}
    if kind == "person":
        names |= {m.group().lower() for m in _ROLE.finditer(text)}
    return names


def has_type(sentence: str, kind: str | None, question: str = "") -> bool:
    """Whether ``sentence`` states a ``kind`` of value that the question does not already give."""
    if kind is None:
        return True
    asked = _values(kind, question)
    if kind in ("person", "name"):
        asked_words = set(question.lower().split())
        return any(not set(v.lower().split()) <= asked_words for v in _values(kind, sentence) - asked)
    return bool(_values(kind, sentence) - asked)


def key_terms(question: str) -> list[str]:
    """The question's content terms (stemmed), without question words."""
    seen: list[str] = []
    for tok in tokenize(question):
        if tok not in _QUESTION_WORDS and tok not in seen:
            seen.append(tok)
    return seen


@dataclass(frozen=True)
class Candidate:
    """One sentence of a retrieved passage, scored against a question."""

    hit_index: int        # 0-based position in the hits list
    start: int            # offsets in the document's stored text
    end: int
    text: str
    similarity: float     # MiniLM cosine with the question
    coverage: float       # share of the question's key terms in the sentence and its neighbours
    typed: bool           # holds the expected kind of answer
    score: float


class SentenceEmbeddings:
    """Embeds sentences with a bounded cache (passages recur across questions)."""

    def __init__(self, embedder: Embedder, size: int = 20000) -> None:
        self.embedder = embedder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # sessions of the UI share one cache

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self.embedder.embed_documents(missing)
            for t, v in zip(missing, vectors):
                self._cache[t] = v
        out = np.zeros((len(texts), self.embedder.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            self._cache.move_to_end(t)
            out[i] = self._cache[t]
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out


class EvidenceRanker:
    """Scores the sentences of retrieved passages for a question."""

    def __init__(self, embedder: Embedder, guard: bool = True) -> None:
        self.embedder = embedder
        self.embed = SentenceEmbeddings(embedder)
        self.guard = guard

    def rank(self, question: str, hits: list[Hit]) -> list[Candidate]:
        """Every usable sentence of ``hits``, best first (duplicates from overlaps removed)."""
        spans: list[tuple[int, int, int, str, str]] = []  # hit, start, end, text, context
        seen: set[tuple[str, int]] = set()
        for i, hit in enumerate(hits):
            text = hit.chunk.text
            sents = sentence_spans(text)
            for j, (s, e) in enumerate(sents):
                sentence = text[s:e]
                key = (hit.chunk.doc_id, hit.chunk.char_start + s)
                if key in seen or len(sentence.split()) < 4 or (self.guard and is_instruction(sentence)):
                    continue
                seen.add(key)
                lo = sents[j - 1][0] if j > 0 else s
                hi = sents[j + 1][1] if j + 1 < len(sents) else e
                spans.append((i, hit.chunk.char_start + s, hit.chunk.char_start + e, sentence,
                              text[lo:hi]))
        if not spans:
            return []
        terms = key_terms(question)
        kind = expected_type(question)
        qv = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
        sims = self.embed([sp[3] for sp in spans]) @ qv
        out = []
        for (i, start, end, sentence, context), sim in zip(spans, sims):
            own = set(tokenize(sentence))
            near = set(tokenize(context))
            cov = (sum(1.0 if t in own else 0.5 if t in near else 0.0 for t in terms) / len(terms)) if terms else 0.0
            typed = has_type(sentence, kind, question)
            score = 0.55 * float(sim) + 0.45 * cov + (0.0 if typed else -0.15) - 0.01 * i
            out.append(Candidate(i, start, end, sentence, float(sim), cov, typed, score))
        out.sort(key=lambda c: -c.score)
        return out
