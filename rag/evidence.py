"""Rank the sentences of retrieved passages as evidence for a question.

Used by the extractive generator (to choose what to quote), the abstention
decision (to judge whether any sentence answers) and the support check (to
find the quote that backs an answer sentence).  Each sentence gets the features
in :data:`FEATURES` (MiniLM similarity with the question, its own and its
neighbours'; coverage of the question's key terms; whether it states the kind of
value asked for; the passage's rank and retrieval score; its shape), and a
logistic model fitted on the tune split (``python -m rag.train``) turns them into
the probability that the sentence holds what was asked.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from rag.answer_types import KINDS, expected_type, has_type, value_spans, values
from rag.embeddings import Embedder
from rag.guard import is_instruction
from rag.learned import LogisticModel, load_models
from rag.lexical import stem_spans, tokenize
from rag.sentences import sentence_spans
from rag.store import SentenceLookup
from rag.types import Hit

# Words that say what kind of answer is wanted but name nothing in the documents
# (English question grammar, not words of any corpus).
_QUESTION_WORDS = frozenset(tokenize(
    "what which who whom whose when where why how many much does did do is are was were "
    "can could should would will may might must describe explain name give list tell"
))

# A Markdown heading names a section; it states nothing, so it is never evidence.
_HEADING = re.compile(r"\s*#{1,6}\s")

# Featurisation constants, measured out of fold on the tune split by
# ``python benchmarks/answer_constants.py`` (benchmarks/results/answer_constants.json).
#: Shorter sentences are never candidates.  At 3 words evidence is among the candidates of 0.963
#: of answerable questions (0.957 at 4) but ranked worse (top-1 0.683 against 0.696, near-topic
#: declined 0.740 against 0.753); 5 is within a question or two of 4; 6 loses evidence (0.932).
MIN_WORDS = 4
#: A key term found only in a neighbouring sentence counts this much towards ``near_coverage``.
#: 0.25 and 0.75 give the same top-1 (0.696) and answered rate (0.848), near-topic declined
#: within 0.007 of 0.5's: the feature is flat here, and the midpoint is kept.
NEIGHBOUR_CREDIT = 0.5
#: ``value_near_term``: a value of the asked kind within this many characters of a key term.
#: 15 and 40 give top-1 0.696 and 0.693, answered 0.845 and near-topic declined 0.760 and 0.753,
#: against 0.696, 0.848 and 0.753 at 25: flat.
VALUE_REACH = 25

FEATURES: tuple[str, ...] = (
    "similarity", "similarity_gap", "neighbour_similarity", "coverage", "coverage_gap", "near_coverage",
    "rare_coverage", "typed", "type_missing", "asks_type", "passage_rank", "passage_score", "passage_dense",
    "position",
    "log_words", "no_end_punct", "key_terms",
    # A typed question wants a sentence that is on topic *and* states the value: a linear
    # model sees that only through these products.
    "similarity_x_typed", "similarity_x_type_missing", "rare_coverage_x_typed", "rare_coverage_x_type_missing",
    "coverage_x_typed", "coverage_x_type_missing", "neighbour_similarity_x_type_missing",
    # The asked-for value next to a key term ("a range of 23 miles" for "What is the range …?"),
    # and the most telling key term missing from the sentence and the one before it.
    "value_near_term", "missing_rare_term",
) + tuple(f"kind_{k}" for k in KINDS)


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
    score: float          # probability that the sentence holds what was asked (learned)
    features: tuple[float, ...] = field(default=(), compare=False, repr=False)


class SentenceEmbeddings:
    """Vectors of sentences: the index's stored ones, else embedded into a bounded cache.

    The sentences of indexed passages are looked up in the index's
    :class:`~rag.store.SentenceVectors` (see :meth:`use`), so answering embeds only the
    question; other text (an LLM's answer sentences) is embedded once and cached.
    """

    def __init__(self, embedder: Embedder, size: int = 20000) -> None:
        self.embedder = embedder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()  # sessions of the UI share one cache
        self._stored: SentenceLookup | None = None

    def use(self, stored: SentenceLookup | None) -> None:
        """Look sentences up in ``stored`` (an index's sentence vectors) before embedding them."""
        self._stored = stored

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self._embed(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.embedder.dim), dtype=np.float32)
        rest: list[int] = []
        stored = self._stored
        found = stored.get_many(texts) if stored is not None else [None] * len(texts)
        for i, vector in enumerate(found):
            if vector is None:
                rest.append(i)
            else:
                out[i] = vector
        missing = list(dict.fromkeys(texts[i] for i in rest if texts[i] not in self._cache))
        if missing:
            vectors = self.embedder.embed_documents(missing)
            for t, v in zip(missing, vectors):
                self._cache[t] = v
        for i in rest:
            self._cache.move_to_end(texts[i])
            out[i] = self._cache[texts[i]]
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out


class EvidenceRanker:
    """Scores the sentences of retrieved passages for a question."""

    def __init__(self, embedder: Embedder, guard: bool = True,
                 model: LogisticModel | None = None) -> None:
        self.embedder = embedder
        self.embed = SentenceEmbeddings(embedder)
        self.guard = guard
        self._model = model

    @property
    def model(self) -> LogisticModel:
        if self._model is None:
            self._model = LogisticModel.from_dict(load_models()["evidence"], FEATURES)
        return self._model

    def rank(self, question: str, hits: list[Hit]) -> list[Candidate]:
        """Every usable sentence of ``hits``, best first (duplicates from overlaps removed)."""
        return score_candidates(self.model, self.featurise(question, hits))

    def featurise(self, question: str, hits: list[Hit]) -> list[Candidate]:
        """Every usable sentence of ``hits`` with its :data:`FEATURES` (score 0, unranked)."""
        spans: list[tuple[int, int, int, int, str]] = []  # hit, index in hit, start, end, text
        per_hit: list[list[tuple[int, int]]] = []
        seen: set[tuple[str, int]] = set()
        for i, hit in enumerate(hits):
            text = hit.chunk.text
            sents = sentence_spans(text)
            per_hit.append(sents)
            for j, (s, e) in enumerate(sents):
                sentence = text[s:e]
                key = (hit.chunk.doc_id, hit.chunk.char_start + s)
                if key in seen or len(sentence.split()) < MIN_WORDS or _HEADING.match(sentence) \
                        or (self.guard and is_instruction(sentence)):
                    continue
                seen.add(key)
                spans.append((i, j, hit.chunk.char_start + s, hit.chunk.char_start + e, sentence))
        if not spans:
            return []
        terms = key_terms(question)
        kind = expected_type(question)
        qv = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
        # Every sentence of the passages is embedded (neighbours too), then looked up.
        all_texts = [hits[i].chunk.text[s:e] for i, sents in enumerate(per_hit) for s, e in sents]
        sim_of = dict(zip(all_texts, (self.embed(all_texts) @ qv).tolist()))
        # A term found in few retrieved sentences is more telling than one found in all.
        tok_sets = {t: set(tokenize(t)) for t in all_texts}
        df = {t: sum(t in toks for toks in tok_sets.values()) for t in terms}
        idf = {t: math.log(1 + len(all_texts) / (1 + df[t])) for t in terms}
        idf_total = sum(idf.values()) or 1.0
        idf_max = max(idf.values(), default=1.0) or 1.0
        asked = values(kind, question) if kind else set()
        rows = []
        for i, j, start, end, sentence in spans:
            text = hits[i].chunk.text
            sents = per_hit[i]
            neighbours = [text[a:b] for a, b in sents[max(0, j - 1):j] + sents[j + 1:j + 2]]
            own = tok_sets[sentence]
            near = set().union(*(tok_sets[n] for n in neighbours)) if neighbours else set()
            own_cov = sum(t in own for t in terms) / len(terms) if terms else 0.0
            near_cov = (sum(1.0 if t in own else NEIGHBOUR_CREDIT if t in near else 0.0 for t in terms) / len(terms)
                        if terms else 0.0)
            rare_cov = sum(idf[t] for t in terms if t in own) / idf_total if terms else 0.0
            typed = has_type(sentence, kind, question)
            previous = tok_sets[neighbours[0]] if j > 0 and neighbours else set()
            missing = max((idf[t] for t in terms if t not in own and t not in previous), default=0.0) / idf_max
            near = _value_near_term(sentence, kind, terms, asked) if kind and typed else 0.0
            rows.append((i, j, start, end, sentence, sim_of[sentence],
                         max((sim_of[n] for n in neighbours), default=0.0), own_cov, near_cov, rare_cov, typed,
                         near, missing))
        best_sim = max(r[5] for r in rows)
        best_cov = max(r[7] for r in rows)
        out = []
        for i, j, start, end, sentence, sim, nsim, own_cov, near_cov, rare_cov, typed, near, missing in rows:
            words = len(sentence.split())
            f = {
                "similarity": sim, "similarity_gap": sim - best_sim, "neighbour_similarity": nsim,
                "coverage": own_cov, "coverage_gap": own_cov - best_cov, "near_coverage": near_cov,
                "rare_coverage": rare_cov, "typed": float(kind is not None and typed),
                "type_missing": float(kind is not None and not typed), "asks_type": float(kind is not None),
                "passage_rank": 1.0 / (1 + i), "passage_score": float(hits[i].score),
                "passage_dense": float(hits[i].dense_score or 0.0),
                "position": j / max(1, len(per_hit[i]) - 1), "log_words": math.log(words),
                "no_end_punct": float(not re.search(r"[.!?:;)\]\"”’']$", sentence)), "key_terms": float(len(terms)),
            }
            for k in KINDS:
                f[f"kind_{k}"] = float(kind == k)
            for name in ("similarity", "rare_coverage", "coverage"):
                f[f"{name}_x_typed"] = f[name] * f["typed"]
                f[f"{name}_x_type_missing"] = f[name] * f["type_missing"]
            f["neighbour_similarity_x_type_missing"] = f["neighbour_similarity"] * f["type_missing"]
            f["value_near_term"] = near
            f["missing_rare_term"] = missing
            out.append(Candidate(i, start, end, sentence, float(sim), near_cov, typed, 0.0,
                                 tuple(float(f[name]) for name in FEATURES)))
        return out


def score_candidates(model: LogisticModel, candidates: list[Candidate]) -> list[Candidate]:
    """``candidates`` scored by the evidence ``model``, best first (ties in passage order)."""
    if not candidates:
        return []
    probs = model.proba(np.array([c.features for c in candidates]))
    out = [Candidate(c.hit_index, c.start, c.end, c.text, c.similarity, c.coverage, c.typed, float(p),
                     c.features) for c, p in zip(candidates, probs)]
    out.sort(key=lambda c: (-c.score, c.hit_index, c.start))
    return out


def _value_near_term(sentence: str, kind: str, terms: list[str], asked: set[str]) -> float:
    """1.0 when a value of ``kind`` (not one the question gives) lies within :data:`VALUE_REACH`
    characters of a key term of the question in ``sentence``, else 0.0."""
    wanted = set(terms)
    term_spans = [(a, b) for a, b, stem in stem_spans(sentence) if stem in wanted]
    for a, b in value_spans(kind, sentence):
        if sentence[a:b].strip().lower() in asked:
            continue
        if any(a - VALUE_REACH <= tb and ta <= b + VALUE_REACH for ta, tb in term_spans):
            return 1.0
    return 0.0

