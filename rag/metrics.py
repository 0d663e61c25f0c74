"""Scoring functions of the evaluation harness: coverage, ranks, F1, percentiles."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "‟": '"'})
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lower-case, Unicode NFKC, straight quotes."""
    return unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


def _grams(tokens: list[str], n: int = 4) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def covers(passage: str, quote: str) -> bool:
    """A passage covers a quote when at least half of the quote's word 4-grams occur in it
    (all of its words, for quotes under four words).

    This is the evaluation's definition, printed with every report; half rather than all lets a
    quote that runs over a chunk boundary still count for the passage holding most of it.  The
    training labels use the same test, so the models learn what the evaluation scores."""
    q = words(quote)
    if not q:
        return False
    p = words(passage)
    if len(q) < 4:
        return set(q) <= set(p)
    qg = _grams(q)
    return len(qg & _grams(p)) * 2 >= len(qg)


def recall_at(passages: list[str], quotes: list[str], k: int) -> float:
    """Share of ``quotes`` covered by some passage among the first ``k``."""
    if not quotes:
        return 0.0
    top = passages[:k]
    return sum(any(covers(p, q) for p in top) for q in quotes) / len(quotes)


def reciprocal_rank(passages: list[str], quotes: list[str], k: int = 10) -> float:
    """1 / rank of the first passage (within ``k``) that covers any quote, else 0."""
    for rank, p in enumerate(passages[:k], start=1):
        if any(covers(p, q) for q in quotes):
            return 1.0 / rank
    return 0.0


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token F1 (markers and punctuation ignored)."""
    pred = words(re.sub(r"\[\d+(?:\s*,\s*\d+)*\]", " ", prediction))
    ref = words(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
