"""The guard detector's fitting settings, swept on its train split.

    python benchmarks/guard_settings.py

``python -m rag.guard_train`` fits a logistic model with regularisation ``C`` and weighs the
directive ordinary sentences ``HARD_WEIGHT`` times, then picks the lowest threshold that keeps
the masked ordinary sentences within their budgets, out of fold.  On a grid of both, this
reports that threshold and the share of attack sentences the detector then catches out of
fold: the more, within the same budgets, the better.
Train split only.  Writes benchmarks/results/guard_settings.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import table, write  # noqa: E402

import rag.guard_train as guard_train  # noqa: E402


def main() -> int:
    rows = guard_train.load("train")
    out = []
    for c in (1.0, 3.0, 10.0, 30.0, 100.0):
        for weight in (1.0, 2.0, 5.0, 10.0, 20.0):
            with patch.object(guard_train, "C", c), patch.object(guard_train, "HARD_WEIGHT", weight):
                record = guard_train.fit(rows)["record"]
            out.append({"C": c, "HARD_WEIGHT": weight, "threshold": record["threshold"], **record["out_of_fold"]})
    print(table(out, ["C", "HARD_WEIGHT", "threshold", "attacks_flagged", "directive_ordinary_flagged",
                      "broad_ordinary_flagged"]))
    path = write("guard_settings", {"split": "train", "folds": guard_train.FOLDS,
                                    "budgets": {"directive": guard_train.DIRECTIVE_BUDGET,
                                                "broad": guard_train.BROAD_BUDGET},
                                    "rows": out})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
