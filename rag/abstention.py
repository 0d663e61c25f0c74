"""Decide whether the retrieved passages answer a question, before any answer is written.

Similarity alone does not separate near-topic unanswerable questions from
answerable ones (MiniLM scores overlap), so the decision is a logistic model
over signals of the ranked evidence (see :mod:`rag.evidence`): the learned
probabilities of the best sentences, their similarity and key-term coverage,
whether the best sentence states the kind of value asked for, and the share of
the question's key terms that occur nowhere in the corpus.  A question that asks
for a kind of value (a number, date, version, person or name) is answered only
when the best sentence states one with enough probability.  The model and its
thresholds are fitted on the tune split by ``python -m rag.train``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rag.evidence import FEATURES, Candidate, key_terms
from rag.learned import LogisticModel, load_models

QUESTION_FEATURES: tuple[str, ...] = (
    "p1", "p2", "p3_mean", "best_similarity", "best_coverage", "best_rare_coverage", "best_typed",
    "type_missing_top3", "unknown_terms", "key_terms", "asks_type",
    "typed_rare_coverage", "typed_coverage_gap", "typed_similarity", "typed_similarity_gap", "typed_p",
)
_F = {name: i for i, name in enumerate(FEATURES)}
# The best sentences the question's features look at, measured out of fold on the tune split
# by ``python benchmarks/answer_constants.py`` (benchmarks/results/answer_constants.json).
#: The top sentences averaged in ``p3_mean`` and ``type_missing_top3``.  At 2 and 5 every decision
#: rate is within 0.014 of 3's (answered 0.848, near-topic declined 0.753).
TOP = 3
#: The best sentences searched for the best similarity, coverage and typed sentence.  At 5 and 20
#: the answerable model's AUC is 0.894 and 0.898 (0.896 at 10) and the decision rates are the same.
WINDOW = 10


@dataclass
class Decision:
    """Whether to answer, and the signals behind it."""

    answerable: bool
    reason: str
    signals: dict[str, float] = field(default_factory=dict)


def question_features(question: str, candidates: list[Candidate], in_corpus: Callable[[str], bool]) -> dict[str, float]:
    """The :data:`QUESTION_FEATURES` of a question and its ranked candidates."""
    terms = key_terms(question)
    unknown = [t for t in terms if not in_corpus(t)]
    top = candidates[:TOP]
    asks = bool(top and top[0].features[_F["asks_type"]])
    # The best sentences that state the kind of value asked for (all sentences, for other questions).
    typed = [c for c in candidates if c.typed or not asks][:WINDOW]
    best_rare = max((c.features[_F["rare_coverage"]] for c in candidates[:WINDOW]), default=0.0)
    best_sim = max((c.similarity for c in candidates[:WINDOW]), default=0.0)
    typed_rare = max((c.features[_F["rare_coverage"]] for c in typed), default=0.0)
    typed_sim = max((c.similarity for c in typed), default=0.0)
    probs = [c.score for c in top] + [0.0] * (max(TOP, 2) - len(top))
    best = top[0].features if top else (0.0,) * len(FEATURES)
    return {
        "p1": probs[0], "p2": probs[1], "p3_mean": sum(probs[:TOP]) / TOP,
        "best_similarity": best_sim,
        "best_coverage": max((c.features[_F["coverage"]] for c in candidates[:WINDOW]), default=0.0),
        "best_rare_coverage": best_rare,
        "best_typed": float(best[_F["typed"]]),
        "type_missing_top3": sum(c.features[_F["type_missing"]] for c in top) / TOP,
        "unknown_terms": len(unknown) / len(terms) if terms else 0.0,
        "key_terms": float(len(terms)),
        "asks_type": float(best[_F["asks_type"]]),
        "typed_rare_coverage": typed_rare, "typed_coverage_gap": best_rare - typed_rare,
        "typed_similarity": typed_sim, "typed_similarity_gap": best_sim - typed_sim,
        "typed_p": max((c.score for c in typed), default=0.0),
    }


class AnswerabilityModel:
    """The fitted answer-or-abstain model (loaded from the shipped model file)."""

    def __init__(self, model: LogisticModel | None = None) -> None:
        self.model = model or LogisticModel.from_dict(load_models()["answerable"], QUESTION_FEATURES)
        self.threshold = self.model.thresholds.get("answer", 0.5)
        self.typed_threshold = self.model.thresholds.get("answer_typed", self.threshold)
        self.typed_top = self.model.thresholds.get("typed_top", 0.0)

    def decide(self, question: str, candidates: list[Candidate], in_corpus: Callable[[str], bool]) -> Decision:
        """Answer or abstain, from the ranked evidence ``candidates`` of the question."""
        if not candidates:
            return Decision(False, "no passage was retrieved")
        signals = question_features(question, candidates, in_corpus)
        p = float(self.model.proba(np.array([[signals[n] for n in QUESTION_FEATURES]]))[0])
        signals["p_answerable"] = p
        best = candidates[0]
        if not signals["asks_type"] and p >= self.threshold:
            return Decision(True, "supported", signals)
        if signals["asks_type"] and p >= self.typed_threshold and best.typed and best.score >= self.typed_top:
            return Decision(True, "supported", signals)
        terms = key_terms(question)
        unknown = [t for t in terms if not in_corpus(t)]
        # Only which reason is shown: the decision above is already made.  Half or more of the
        # question's key terms unknown to the corpus is what "never mention" can honestly claim.
        if unknown and signals["unknown_terms"] >= 0.5:
            reason = f"the documents never mention: {', '.join(unknown)}"
        elif signals["asks_type"]:
            reason = "no passage clearly states the kind of value asked for"
        else:
            reason = "no passage sentence answers the question well enough"
        return Decision(False, reason, signals)


def decide(question: str, candidates: list[Candidate], in_corpus: Callable[[str], bool]) -> Decision:
    """Answer or abstain with the shipped model (see :class:`AnswerabilityModel`)."""
    return _default().decide(question, candidates, in_corpus)


_MODEL: AnswerabilityModel | None = None


def _default() -> AnswerabilityModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = AnswerabilityModel()
    return _MODEL
