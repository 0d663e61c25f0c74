"""The check a fresh ``rag train`` output must pass (not a test module; the README test uses it)."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_reproduces(refit: dict[str, Any], shipped: dict[str, Any]) -> None:
    """``refit`` (a fresh ``rag train`` output) matches the shipped model file: same fusion
    weight and features, coefficients within 0.02, thresholds within 0.02, same questions."""
    assert refit["retrieval"]["alpha"] == shipped["retrieval"]["alpha"]
    for name in ("evidence", "answerable"):
        assert refit[name]["features"] == shipped[name]["features"]
        assert np.allclose(refit[name]["coef"], shipped[name]["coef"], atol=0.02), name
        for key, value in shipped[name]["thresholds"].items():
            assert abs(refit[name]["thresholds"][key] - value) <= 0.02, (name, key)
    assert refit["fitted"]["questions"] == shipped["fitted"]["questions"]
