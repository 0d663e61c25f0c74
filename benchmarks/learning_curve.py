"""Would more tune data help?  The fitted models' held-out figures against the amount of data.

    python benchmarks/learning_curve.py

Every tune question (and the off-topic ones) is featurised as ``python -m rag.train`` does
(:func:`rag.train.collect`).  For each of the five folds (grouped by document), the evidence
model, the answerable model and the decision's thresholds are fitted, as the training command
fits them, on a random share of the *other* folds' documents (a third, a half, three quarters;
three draws each; all of them once), and the held-out fold's questions are then answered or
declined by the shipped decision (:class:`rag.abstention.AnswerabilityModel`).  Reported per
share, averaged over the draws: how often the best sentence of an answerable question is
evidence (top-1), and the shares of answerable questions answered and of near-topic and
off-topic unanswerable ones declined.

A curve that still rises at the full share says more questions of the same kind would help; a
flat one says the features, not the amount of data, limit the models.  Tune split only: the test
split is never read.  Writes benchmarks/results/learning_curve.json.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from common import table, write  # noqa: E402

from rag import train as T  # noqa: E402
from rag.abstention import QUESTION_FEATURES, AnswerabilityModel  # noqa: E402
from rag.evidence import FEATURES, score_candidates  # noqa: E402
from rag.learned import LogisticModel  # noqa: E402

SHARES = (0.33, 0.5, 0.75, 1.0)
DRAWS = 3


def fitted(train: list[T.Example]) -> tuple[LogisticModel, AnswerabilityModel]:
    """Both models and the decision's thresholds, fitted on ``train`` by :func:`rag.train.fit`."""
    model = T.fit(train)
    return (LogisticModel.from_dict(model["evidence"], FEATURES),
            AnswerabilityModel(LogisticModel.from_dict(model["answerable"], QUESTION_FEATURES)))


def held_out(examples: list[T.Example], share: float, seed: int) -> dict[str, float]:
    """Figures on each fold with models fitted on ``share`` of the other folds' documents."""
    fold_of = dict(zip((e.group for e in examples), T._folds([e.group for e in examples])))
    rng = random.Random(seed)
    top1: list[int] = []
    answered: list[bool] = []
    near: list[bool] = []
    off: list[bool] = []
    for fold in range(T.FOLDS):
        others = sorted({g for g, f in fold_of.items() if f != fold})
        rng.shuffle(others)
        keep = set(others[:max(2, round(share * len(others)))])
        evidence, decision = fitted([e for e in examples if e.group in keep])
        for e in (e for e in examples if fold_of[e.group] == fold):
            scored = score_candidates(evidence, e.candidates)
            answers = decision.decide(e.question, scored, e.in_corpus).answerable
            if e.answerable:
                answered.append(answers)
                top1.append(bool(T.top1_is_evidence([e], [scored])))
            elif e.group.endswith("/off-topic"):
                off.append(not answers)
            else:
                near.append(not answers)
    return {"top1": float(np.mean(top1)), "answered": float(np.mean(answered)),
            "near_topic_declined": float(np.mean(near)), "off_topic_declined": float(np.mean(off))}


def main() -> int:
    alpha, _ = T.choose_alpha("tune")
    examples = T.collect("tune", progress=False, alpha=alpha)
    rows = []
    for share in SHARES:
        draws = [held_out(examples, share, seed) for seed in range(1 if share == 1.0 else DRAWS)]
        rows.append({"share": share, "draws": len(draws),
                     **{k: round(float(np.mean([d[k] for d in draws])), 4) for k in draws[0]},
                     "per_draw": draws})
    print(table(rows, ["share", "draws", "top1", "answered", "near_topic_declined", "off_topic_declined"]))
    path = write("learning_curve", {
        "split": "tune", "questions": len(examples), "documents": len({e.group for e in examples}),
        "folds": T.FOLDS,
        "note": "per fold, models and thresholds fitted on a share of the other folds' documents and "
                "scored on the fold; averaged over draws", "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
