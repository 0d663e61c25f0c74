"""Tune questions that ask for a value without saying which kind: does fitting on them help?

    python benchmarks/untyped_questions.py

Most of the collection's near-topic unanswerable tune questions open with a phrase that names the
kind of value asked for ("How many …", "Which version …", "Who …"), which the typed-value rule
decides: of the 154 near-topic ones the grammar reads 13 as asking for no kind.
``eval/qa/untyped/`` holds 184 more tune questions (114 near-topic unanswerable, 70 answerable)
about the same tune documents, written without those openers ("What is the path of …", "Which
option …", "List the …"); the grammar reads 103 of them (61 of the unanswerable) as asking for no
kind, and most of the rest as asking for a name.  Here both models and the thresholds are fitted as
``python -m rag.train`` fits them, once on the collection's tune split (as shipped) and once
with those questions added, and each fit is scored:

- on tune, out of fold (folds grouped by document, thresholds chosen on four folds and applied
  to the fifth): answered, near-topic and off-topic declined;
- on the test split, which neither fit reads: the answerable model's AUC (answerable against
  unanswerable questions), the evidence model's top-1, and the decision's answered and declined
  rates, each question answered or declined as the assistant would (retrieval with the fit's
  fusion weight, the shipped decision).

Writes benchmarks/results/untyped_questions.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from common import ROOT, table, write  # noqa: E402

from rag import train as T  # noqa: E402
from rag.abstention import QUESTION_FEATURES, AnswerabilityModel  # noqa: E402
from rag.collection import COLLECTION, load_collection  # noqa: E402
from rag.evidence import FEATURES, score_candidates  # noqa: E402
from rag.learned import LogisticModel  # noqa: E402

EXTRA = ROOT / "eval" / "qa" / "untyped"


def with_extra(folder: Path) -> Path:
    """A copy of the collection file in ``folder`` whose QA files also hold the extra questions."""
    data = json.loads(COLLECTION.read_text(encoding="utf-8"))
    for corpus in load_collection():
        entry = data["corpora"][corpus.name]
        entry["folder"] = str(corpus.folder)
        entry["qa"] = str(corpus.qa)
        extra = EXTRA / f"{corpus.name}.jsonl"
        if extra.is_file():
            merged = folder / f"{corpus.name}.jsonl"
            merged.write_text(corpus.qa.read_text(encoding="utf-8").rstrip("\n") + "\n"
                              + extra.read_text(encoding="utf-8"), encoding="utf-8")
            entry["qa"] = str(merged)
    path = folder / "collection.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def fit(collection: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The model file's content fitted on ``collection``'s tune split, and its nested tune rates."""
    alpha, _ = T.choose_alpha("tune", collection)
    examples = T.collect("tune", collection, progress=False, alpha=alpha)
    o = T.out_of_fold(examples)
    model = T.fit(examples, o)
    model["retrieval"] = {"alpha": alpha}
    held = T.held_out_decisions(o)
    near = (o.qy == 0) & ~o.off
    rates = {"tune_questions": len(examples), "tune_answered": float(held[o.qy == 1].mean()),
             "tune_near_topic_declined": float((~held[near]).mean()),
             "tune_off_topic_declined": float((~held[o.off]).mean())}
    return model, rates


def on_test(model: dict[str, Any]) -> dict[str, float]:
    """The fitted models on the test split's questions, decided as the assistant decides."""
    evidence = LogisticModel.from_dict(model["evidence"], FEATURES)
    decision = AnswerabilityModel(LogisticModel.from_dict(model["answerable"], QUESTION_FEATURES))
    examples = T.collect("test", progress=False, alpha=model["retrieval"]["alpha"], off_topic=0)
    y, p, answered, top1 = [], [], [], []
    for e in examples:
        scored = score_candidates(evidence, e.candidates)
        d = decision.decide(e.question, scored, e.in_corpus)
        y.append(int(e.answerable))
        p.append(d.signals.get("p_answerable", 0.0))
        answered.append(d.answerable)
        if e.answerable:
            top1.append(bool(T.top1_is_evidence([e], [scored])))
    ya, aa = np.array(y), np.array(answered)
    return {"test_questions": len(examples), "test_answerable_auc": T._auc(ya, np.array(p)),
            "test_top1": float(np.mean(top1)), "test_answered": float(aa[ya == 1].mean()),
            "test_declined": float((~aa[ya == 0]).mean())}


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, collection in (("shipped tune split", COLLECTION), ("with the untyped questions", with_extra(Path(tmp)))):
            model, rates = fit(collection)
            a = model["answerable"]["thresholds"]
            rows.append({"fit": name, **rates, **on_test(model), "alpha": model["retrieval"]["alpha"],
                         "thresholds": f"{a['answer']:.2f}/{a['answer_typed']:.2f}/{a['typed_top']:.2f}"})
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    print(table(rows, ["fit", "tune_questions", "tune_answered", "tune_near_topic_declined", "tune_off_topic_declined",
                       "test_answerable_auc", "test_top1", "test_answered", "test_declined", "thresholds"]))
    path = write("untyped_questions", {
        "extra_questions": sum(1 for f in EXTRA.glob("*.jsonl") for line in f.open() if line.strip()),
        "note": "tune rates out of fold with thresholds chosen on the other folds; test rates with the "
                "thresholds chosen on all of tune; thresholds: answer/answer_typed/typed_top", "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
