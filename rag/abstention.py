"""Decide whether the retrieved passages answer a question, before any answer is written.

Similarity alone does not separate near-topic unanswerable questions from
answerable ones (MiniLM scores overlap), so the decision combines signals of
the best evidence sentences (see :mod:`rag.evidence`):

- key terms of the question found nowhere in the corpus;
- coverage of the question's key terms by the best sentence and its neighbours;
- the kind of answer asked for ("how many" needs a number, "when" a date,
  "who" a name) present in a sentence that also covers the asked-about terms;
- MiniLM similarity of that sentence.

Thresholds were calibrated on eval/dev.jsonl; the README gives the measured
abstention and false-abstention rates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rag.evidence import Candidate, expected_type, key_terms

#: A candidate this good answers the question (score = 0.55 * similarity + 0.45 * coverage ...).
MIN_SCORE = 0.33
#: A typed question needs a typed sentence covering this share of its key terms.
MIN_TYPED_COVERAGE = 0.6
#: Abstain when more than this share of the key terms occur nowhere in the corpus.
MAX_UNKNOWN_TERMS = 0.67


@dataclass
class Decision:
    """Whether to answer, and the signals behind it."""

    answerable: bool
    reason: str
    signals: dict[str, float] = field(default_factory=dict)


def decide(question: str, candidates: list[Candidate], in_corpus: Callable[[str], bool]) -> Decision:
    """Answer or abstain, from the ranked evidence ``candidates`` of the question."""
    terms = key_terms(question)
    unknown = [t for t in terms if not in_corpus(t)]
    unknown_share = len(unknown) / len(terms) if terms else 0.0
    kind = expected_type(question)
    signals = {"unknown_terms": unknown_share, "key_terms": float(len(terms))}
    if not candidates:
        return Decision(False, "no passage was retrieved", signals)
    best = candidates[0]
    signals.update(best_score=best.score, best_similarity=best.similarity, best_coverage=best.coverage)
    if unknown_share > MAX_UNKNOWN_TERMS:
        return Decision(False, f"the documents never mention: {', '.join(unknown)}", signals)
    if kind is not None:
        typed = [c for c in candidates[:8] if c.typed and c.coverage >= MIN_TYPED_COVERAGE]
        signals["typed_candidates"] = float(len(typed))
        if not typed:
            return Decision(False, f"no passage states the {kind} asked for", signals)
    if best.score < MIN_SCORE:
        return Decision(False, "no passage sentence matches the question well enough", signals)
    return Decision(True, "supported", signals)
