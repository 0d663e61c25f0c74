"""Pooled or separate targets for the answer-or-abstain thresholds, measured on tune folds left out.

    python benchmarks/decision_targets.py

Every tune question (and the off-topic ones) is featurised as ``python -m rag.train`` does, and
both models' out-of-fold predictions are computed (:func:`rag.train.out_of_fold`, folds grouped
by document).  For each fold, the three decision thresholds are chosen on the other four folds
(:func:`rag.train.choose_thresholds`) with near-topic and off-topic unanswerable questions held
to the 0.80 target either pooled (earlier releases) or separately (shipped), and applied to the
fold left out.  Reports, over all folds, the share of answerable questions answered and of
near-topic and off-topic unanswerable ones declined, and the thresholds chosen on all folds.
Tune split only: the test split is never read.  Writes benchmarks/results/decision_targets.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import table, write  # noqa: E402

from rag.train import FOLDS, choose_alpha, choose_thresholds, collect, held_out_decisions, out_of_fold  # noqa: E402


def main() -> int:
    alpha, _ = choose_alpha("tune")
    o = out_of_fold(collect("tune", progress=False, alpha=alpha))
    near, off = (o.qy == 0) & ~o.off, o.off
    rows = []
    for separate in (False, True):
        held_out = held_out_decisions(o, separate)
        rows.append({
            "targets": "separate" if separate else "pooled",
            "answered": round(float(held_out[o.qy == 1].mean()), 3),
            "near_topic_declined": round(float((~held_out[near]).mean()), 3),
            "off_topic_declined": round(float((~held_out[off]).mean()), 3),
            "thresholds_on_all_folds": choose_thresholds(o, separate=separate),
        })
    columns = ["targets", "answered", "near_topic_declined", "off_topic_declined", "thresholds_on_all_folds"]
    print(table(rows, columns))
    path = write("decision_targets", {
        "split": "tune", "questions": len(o.qy), "answerable": int(o.qy.sum()),
        "near_topic": int(near.sum()), "off_topic": int(off.sum()), "folds": FOLDS,
        "note": "thresholds chosen on four folds, applied to the fifth; rates over all folds", "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
