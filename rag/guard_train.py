"""Fit the document guard's detector (see :mod:`rag.guard`) on the train split of ``eval/guard/``.

    python -m rag.guard_train [--out PATH]

Logistic regression (scikit-learn, the ``train`` extra) over :func:`rag.guard.features`
of every train sentence: attacks (label 1) and ordinary sentences (label 0), the
directive ordinary ones weighing :data:`HARD_WEIGHT` times as much since they set the
threshold.  Five folds grouped like the split (attack idea, source document) give
out-of-fold probabilities; the threshold is the lowest on a 0.005 grid at which the
detector (a pattern matches, or the probability reaches the threshold) masks at most
:data:`DIRECTIVE_BUDGET` of the directive and :data:`BROAD_BUDGET` of the broadly sampled
ordinary sentences out of fold.
The model is then fitted on all of ``train`` and written as NPZ (no pickle) with a record
of the fit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.guard import _PATTERNS, DIM, MODEL_PATH, features

DATA = Path(__file__).resolve().parent.parent / "eval" / "guard"
#: Out-of-fold share of directive ordinary sentences the detector may mask, and of the broad
#: sample of ordinary sentences.  The product allows 2 % on held-out documents (and 1 of 44 on
#: an independent check); half of it is kept as a margin for documents unlike the train split's.
DIRECTIVE_BUDGET = 0.01
BROAD_BUDGET = 0.005
#: Regularisation, and the weight of a directive ordinary sentence against an attack or a broad
#: one.  On a grid of both (``python benchmarks/guard_settings.py``, train split, out of fold,
#: within the same budgets) weight 20 catches the most attacks at every C but 30 (0.256 at C 10,
#: against 0.199 at weight 5); C shows no trend at weight 20 (0.275, 0.262, 0.256, 0.234, 0.289
#: for 1 to 100, the last with its threshold at the grid's edge), so it stays 10.  Weight 20
#: ships (5 before): on the test split the detector misses 69 % of the attacks instead of 74 % and
#: masks the same 1 of 146 directive ordinary sentences (``python benchmarks/guard_detector.py``).
C = 10.0
HARD_WEIGHT = 20.0
FOLDS = 5


def load(split: str, data: Path = DATA) -> list[dict[str, Any]]:
    """The sentences of ``split``: attacks, directive ordinary sentences ("hard") and the broad sample."""
    rows = []
    for name, key, kind in (("injections.jsonl", "idea", "attack"), ("ordinary.jsonl", "doc", "hard"),
                            ("ordinary_harvest.jsonl", "doc", "broad")):
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row["split"] == split:
                    rows.append({**row, "group": f"{name}:{row[key]}", "set": kind})
    return rows


def matrix(texts: list[str]) -> Any:
    """The sparse feature matrix of ``texts``."""
    from scipy.sparse import csr_matrix

    cols, vals, ptr = [], [], [0]
    for text in texts:
        idx, values = features(text)
        cols.append(idx)
        vals.append(values)
        ptr.append(ptr[-1] + len(idx))
    return csr_matrix((np.concatenate(vals), np.concatenate(cols), ptr), shape=(len(texts), DIM + len(_PATTERNS)))


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Coefficients, intercept, threshold and the fit's record for the train ``rows``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    x = matrix([r["text"] for r in rows])
    y = np.array([r["label"] for r in rows])
    kinds = np.array([r["set"] for r in rows])
    weight = np.where(kinds == "hard", HARD_WEIGHT, 1.0)
    groups = [r["group"] for r in rows]

    def model() -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=5000, class_weight="balanced")

    oof = np.zeros(len(rows))
    for a, b in GroupKFold(n_splits=FOLDS).split(x, y, groups):
        oof[b] = model().fit(x[a], y[a], sample_weight=weight[a]).predict_proba(x[b])[:, 1]
    matched = np.asarray(x[:, DIM:].sum(axis=1)).ravel() > 0  # the pattern columns of the features
    grid = np.round(np.arange(0.05, 0.9951, 0.005), 3)
    ok = [t for t in grid if ((oof >= t) | matched)[kinds == "hard"].mean() <= DIRECTIVE_BUDGET
          and ((oof >= t) | matched)[kinds == "broad"].mean() <= BROAD_BUDGET]
    threshold = float(min(ok)) if ok else float(grid[-1])
    flagged = (oof >= threshold) | matched
    final = model().fit(x, y, sample_weight=weight)
    record = {
        "command": "python -m rag.guard_train", "date": time.strftime("%Y-%m-%d"), "split": "train",
        "sentences": len(rows), "attacks": int(y.sum()), "directive_ordinary": int((kinds == "hard").sum()),
        "broad_ordinary": int((kinds == "broad").sum()), "C": C, "folds": f"{FOLDS}, grouped by attack idea / document",
        "threshold": threshold,
        "out_of_fold": {
            "attacks_flagged": round(float(flagged[kinds == "attack"].mean()), 4),
            "directive_ordinary_flagged": round(float(flagged[kinds == "hard"].mean()), 4),
            "broad_ordinary_flagged": round(float(flagged[kinds == "broad"].mean()), 4),
            "attacks_flagged_by_the_patterns_alone": round(float(matched[kinds == "attack"].mean()), 4),
        },
    }
    return {"coef": final.coef_[0].astype(np.float32), "intercept": float(final.intercept_[0]),
            "threshold": threshold, "record": record}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rag.guard_train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=MODEL_PATH, help=f"where to write the model (default {MODEL_PATH})")
    args = ap.parse_args(argv)
    fitted = fit(load("train"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp, coef=fitted["coef"], intercept=np.float64(fitted["intercept"]),
                        threshold=np.float64(fitted["threshold"]), patterns=np.array(_PATTERNS),
                        record=np.array(json.dumps(fitted["record"])))
    tmp.replace(args.out)
    print(json.dumps(fitted["record"], indent=2), file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
