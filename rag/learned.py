"""Logistic models fitted by :mod:`rag.train`, stored as plain JSON and applied with NumPy.

A model file holds, per model, the feature names, the standardisation (mean,
scale), the coefficients, the intercept and the decision thresholds chosen on
the tune split, plus a record of how it was fitted.  Nothing is pickled, and
scikit-learn is needed only to fit, never to answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

#: The shipped models (written by ``python -m rag.train``).
MODEL_PATH = Path(__file__).parent / "models" / "answering.json"


class ModelFileError(ValueError):
    """A model file is missing, malformed or was fitted on other features."""


@dataclass(frozen=True)
class LogisticModel:
    """p(y=1 | x) = sigmoid(((x - mean) / scale) · coef + intercept)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    thresholds: dict[str, float] = field(default_factory=dict)

    def proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a (n, features) array."""
        x = (np.asarray(rows, dtype=np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(x @ self.coef + self.intercept)))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept, "thresholds": self.thresholds}

    @classmethod
    def from_dict(cls, d: dict[str, Any], expected: tuple[str, ...] | None = None) -> "LogisticModel":
        features = tuple(d["features"])
        if expected is not None and features != expected:
            raise ModelFileError(f"model features {features} differ from the code's {expected}; "
                                 "refit with: python -m rag.train")
        arrays = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(features),) for a in arrays):
            raise ModelFileError("model arrays do not match its feature list")
        return cls(features, arrays[0], arrays[1], arrays[2], float(d["intercept"]),
                   {k: float(v) for k, v in d.get("thresholds", {}).items()})


@cache
def load_models(path: Path = MODEL_PATH) -> dict[str, Any]:
    """The model file as a dict (``evidence``, ``answerable``, ``fitted``), read once."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"no model file at {path}; fit one with: python -m rag.train") from None
    except ValueError as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}); refit with: python -m rag.train") from None
    if not isinstance(data, dict) or not {"evidence", "answerable"} <= set(data):
        raise ModelFileError(f"{path} lacks the evidence and answerable models; refit with: python -m rag.train")
    return data
