"""The answering pipeline's set constants, each swept on the tune split.

    python benchmarks/answer_constants.py

The models and thresholds are fitted by ``python -m rag.train``; the constants around them
(how sentences are featurised, which sentences the decision looks at, how many are quoted,
how many off-topic questions training adds, how many passages are retrieved and pooled, how a
claim's support is scored and which claims are checked at all, the quoting grid's edge, and
the follow-up rules' word limits) are set in code.  This measures each one against neighbouring values, one
at a time with the others at their shipped values, every figure out of fold on the tune split
(folds grouped by document; decision rates with thresholds chosen on four folds and applied to
the fifth, as ``benchmarks/decision_targets.py``).  The comments beside the constants cite
these figures.  Tune split only: the test split is never read.  Writes
benchmarks/results/answer_constants.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from answer_trials import nested  # noqa: E402
from common import table, write  # noqa: E402

import rag.abstention  # noqa: E402
import rag.citations  # noqa: E402
import rag.evidence  # noqa: E402
import rag.retrieval  # noqa: E402
from rag import train as T  # noqa: E402
from rag.types import Chunk, Hit  # noqa: E402

#: A wider quoting grid than ``python -m rag.train`` searches (its choice, 0.2, is on the edge).
WIDE_QUOTE_GRID = tuple((q, r) for q in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
                        for r in (0.3, 0.5, 0.7, 0.85, 0.95))


def decision_row(constant: str, value: Any, examples: list[T.Example], o: T.OutOfFold) -> dict[str, Any]:
    answerable = [e for e in examples if e.answerable]
    return {"constant": constant, "value": value,
            "evidence_in_candidates": float(np.mean([any(e.labels) for e in answerable])),
            "evidence_auc": T._auc(o.y, o.evidence_oof), "top1": T.top1_is_evidence(examples, o.scored),
            "answerable_auc": T._auc(o.qy, o.q_oof), **nested(o)}


def quote_f1(examples: list[T.Example], scored: list[list[Any]], most: int,
             grid: tuple[tuple[float, float], ...] = T.QUOTE_GRID) -> tuple[float, float, float]:
    """The best mean F1 of the quoted sentences over ``grid``, and its (quote, ratio)."""
    quote, ratio = T.choose_quoting(examples, scored, grid, most)
    return T.quote_f1(examples, scored, quote, ratio, most), quote, ratio


def followup_rows() -> list[dict[str, Any]]:
    """The follow-up rules' set constants on the tune follow-ups (``rag eval eval/followups.jsonl
    --split tune``, rules only: the extractive backend)."""
    import rag.followup
    from rag.conversation_eval import evaluate_followups

    rows = []
    for name, values in (("NAMELESS_TERMS", (0, 1, 2)), ("ANSWER_NAMES", (0, 3, 6, 10))):
        for v in values:
            with patch.object(rag.followup, name, v):
                s = evaluate_followups("tune")
            rows.append({"constant": f"followup.{name}", "value": v, "followups": s["followups"],
                         "followups_evidence_at_k": s["followups_evidence_at_k"],
                         "standalone_unchanged": s["standalone_unchanged"]})
    return rows


def claim_sizes(examples: list[T.Example]) -> list[dict[str, Any]]:
    """How many tune evidence sentences (what a faithful answer sentence says) the support check's
    size limits touch: fewer content terms than MIN_CLAIM_TERMS makes a sentence a fragment that is
    not checked; shorter than VERBATIM_MIN_CHARS, a word-for-word match is not taken as proof."""
    from rag.lexical import tokenize

    sentences = {c.text for e in examples for c, lab in zip(e.candidates, e.labels) if lab}
    terms = np.array([len(set(tokenize(t))) for t in sentences])
    chars = np.array([len(t) for t in sentences])
    rows: list[dict[str, Any]] = [{"constant": "citations.MIN_CLAIM_TERMS", "value": n, "sentences": len(terms),
                                   "share_below": float((terms < n).mean())} for n in (2, 3, 4, 5)]
    rows += [{"constant": "citations.VERBATIM_MIN_CHARS", "value": n, "sentences": len(chars),
              "share_below": float((chars < n).mean())} for n in (10, 20, 40)]
    return rows


def support_rows(examples: list[T.Example]) -> list[dict[str, Any]]:
    """Support check settings: claims are tune evidence sentences with every third word dropped,
    scored against their own sentence, against the non-evidence sentence most similar to the
    question, and (with an invented name appended, "… in Bellamy") against their own sentence."""
    from rag.citations import SUPPORT_THRESHOLD, SupportChecker, _NAME_WORD
    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.evidence import SentenceEmbeddings

    checker = SupportChecker(SentenceEmbeddings(embedder_for(Settings().embedding)))
    cases = []
    for e in examples:
        wrong = [d for d, lab in zip(e.candidates, e.labels) if not lab]
        for c, lab in zip(e.candidates, e.labels):
            if not lab or not wrong:
                continue
            words = c.text.split()
            claim = " ".join(w for n, w in enumerate(words) if n % 3 != 2)
            other = max(wrong, key=lambda x: x.similarity)
            names = [n for d in wrong for n in _NAME_WORD.findall(d.text) if n.lower() not in c.text.lower()]
            cases.append((claim, c.text, other.text, f"{claim.rstrip('.')} in {names[0]}." if names else None))

    def hit(text: str) -> Hit:
        return Hit(Chunk("x", "x", "x", "x", text, 0, len(text), 1, 1), 1.0, 1)

    def measure(constant: str, value: Any) -> dict[str, Any]:
        own = np.array([checker.support(claim, hit(text)).score for claim, text, _, _ in cases])
        other = np.array([checker.support(claim, hit(o)).score for claim, _, o, _ in cases])
        invented = np.array([checker.support(n, hit(text)).score for _, text, _, n in cases if n])
        y = np.concatenate([np.ones(len(own)), np.zeros(len(other))])
        return {"constant": constant, "value": value, "claims": len(cases),
                "own_kept": float((own >= SUPPORT_THRESHOLD).mean()),
                "other_rejected": float((other < SUPPORT_THRESHOLD).mean()),
                "own_vs_other_auc": T._auc(y, np.concatenate([own, other])),
                "invented_name_rejected": float((invented < SUPPORT_THRESHOLD).mean())}

    rows = []
    for name, values in (("SIMILARITY_WEIGHT", (0.3, 0.4, 0.5, 0.6, 0.7)), ("NAME_PENALTY", (0.1, 0.25, 0.4)),
                         ("PAIR_PENALTY", (0.0, 0.03, 0.1))):
        for v in values:
            with patch.object(rag.citations, name, v):
                rows.append(measure(name, v))
    return rows


def main() -> int:
    alpha, _ = T.choose_alpha("tune")
    rows: list[dict[str, Any]] = []

    def run(constant: str, value: Any, **collect: Any) -> None:
        examples = T.collect("tune", progress=False, alpha=alpha, **collect)
        rows.append(decision_row(constant, value, examples, T.out_of_fold(examples)))
        print(f"{constant} = {value}: done", file=sys.stderr)

    for name, values in (("MIN_WORDS", (3, 4, 5, 6)), ("NEIGHBOUR_CREDIT", (0.25, 0.5, 0.75)),
                         ("VALUE_REACH", (15, 25, 40))):
        for v in values:
            with patch.object(rag.evidence, name, v):
                run(f"evidence.{name}", v)

    examples = T.collect("tune", progress=False, alpha=alpha)
    for name, values in (("TOP", (2, 3, 5)), ("WINDOW", (5, 10, 20))):
        for v in values:
            with patch.object(rag.abstention, name, v):
                rows.append(decision_row(f"abstention.{name}", v, examples, T.out_of_fold(examples)))

    base = T.out_of_fold(examples)
    quoted = []
    for most in (1, 2, 3, 4, 5):
        f1, quote, ratio = quote_f1(examples, base.scored, most)
        quoted.append({"constant": "generators.MAX_QUOTED", "value": most, "quote_f1": f1,
                       "quote": quote, "ratio": ratio})
    for name, grid in (("shipped", T.QUOTE_GRID), ("wider", WIDE_QUOTE_GRID)):
        f1, quote, ratio = quote_f1(examples, base.scored, 3, grid)
        quoted.append({"constant": "train quoting grid", "value": name, "quote_f1": f1, "quote": quote,
                       "ratio": ratio})

    for n in (0, 3, 6, 12):
        run("train.OFF_TOPIC", n, off_topic=n)

    for k in (3, 5, 8):
        os.environ["RAG_RETRIEVAL__K"] = str(k)
        try:
            run("retrieval.k", k)
        finally:
            del os.environ["RAG_RETRIEVAL__K"]

    pools = []
    for pool in (20, 50, 100):
        with patch.object(rag.retrieval, "POOL", pool):
            _, grid = T.choose_alpha("tune")
        pools.append({"constant": "retrieval.POOL", "value": pool, **grid[str(alpha)]})

    support = support_rows(examples)
    followups = followup_rows()
    sizes = claim_sizes(examples)

    def rounded(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rs]

    rows, quoted, pools, support, sizes = (rounded(rows), rounded(quoted), rounded(pools), rounded(support),
                                           rounded(sizes))
    print(table(rows, ["constant", "value", "evidence_in_candidates", "evidence_auc", "top1", "answerable_auc",
                       "answered", "near_topic_declined", "off_topic_declined"]))
    print(table(quoted, ["constant", "value", "quote_f1", "quote", "ratio"]))
    print(table(pools, ["constant", "value", "recall@5", "mrr@10"]))
    print(table(support, ["constant", "value", "claims", "own_kept", "other_rejected", "own_vs_other_auc",
                          "invented_name_rejected"]))
    print(table(sizes, ["constant", "value", "sentences", "share_below"]))
    print(table(followups, ["constant", "value", "followups", "followups_evidence_at_k", "standalone_unchanged"]))
    path = write("answer_constants", {
        "split": "tune", "alpha": alpha, "folds": T.FOLDS,
        "note": "one constant at a time, the others at their shipped values; out of fold, folds grouped by "
                "document; decision rates with thresholds chosen on four folds and applied to the fifth",
        "decision": rows, "quoting": quoted, "retrieval_pool": pools, "support_check": support,
        "claim_sizes": sizes, "followup_rules": followups})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
