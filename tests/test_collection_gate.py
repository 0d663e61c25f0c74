"""Regression gate on the test split of the QA collection (documents never used for fitting).

Measured with ``rag eval eval/collection.json --split test`` (extractive backend, k = 5,
the shipped rag/models/answering.json), 622 questions over 37 test documents, ten of
the sixteen genres held out whole:
    recall@5 0.947  citation precision 0.665  citation recall 0.707
    unanswerable abstained 0.629  answerable abstained 0.126  cited page holds the evidence 0.846
Floors sit 0.03 under those figures (ceilings 0.03 over); the README gives them per genre.
That ``rag train`` reproduces the shipped model is checked where the README runs it
(tests/test_readme.py), so the suite fits the models once.
"""

from __future__ import annotations

import pytest

from rag.collection import evaluate_collection, load_collection
from rag.learned import MODEL_PATH, load_models
from rag.train import OFF_TOPIC

GATE_MIN = {
    "recall@5": 0.91,
    "citation_precision": 0.63,
    "citation_recall": 0.67,
    "abstention_rate": 0.59,
    "page_accuracy": 0.81,
}
GATE_MAX = {"false_abstention_rate": 0.15}


@pytest.fixture(scope="module")
def test_split_summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # The collection's indexes go where `rag eval` keeps them (the settings' cache folder), so
    # the README's `rag eval eval/collection.json` run (tests/test_readme.py) reuses them; they
    # are rebuilt there whenever their documents or the text pipeline change.
    return evaluate_collection("test", out_dir=tmp_path_factory.mktemp("collection-out"))


@pytest.mark.slow
def test_regression_gate_on_the_test_split(test_split_summary: dict) -> None:
    assert test_split_summary["dataset_errors"] == []
    m = test_split_summary["configs"]["all"]["overall"]
    expected = sum(len(c.items("test")) for c in load_collection())
    assert m["questions"] == expected
    failures = [f"{k} = {m[k]:.3f} < {floor}" for k, floor in GATE_MIN.items() if m[k] < floor]
    failures += [f"{k} = {m[k]:.3f} > {ceiling}" for k, ceiling in GATE_MAX.items() if m[k] > ceiling]
    assert not failures, "test-split regression:\n" + "\n".join(failures)


@pytest.mark.slow
def test_every_genre_is_scored_on_the_test_split(test_split_summary: dict) -> None:
    genres = {c.genre for c in load_collection() if c.items("test")}
    assert genres <= set(test_split_summary["configs"])
    for genre in genres:
        m = test_split_summary["configs"][genre]["overall"]
        assert m["questions"] >= 20 and m["answerable"] > 0 and m["unanswerable"] > 0, genre


def test_shipped_model_was_fitted_on_the_tune_split_only() -> None:
    fitted = load_models(MODEL_PATH)["fitted"]
    assert fitted["split"] == "tune"
    corpora = [c for c in load_collection() if c.items("tune")]
    tune = sum(len(c.items("tune")) for c in corpora)
    # Plus the off-topic questions: tune questions of the other tune corpora, OFF_TOPIC per corpus.
    assert fitted["off_topic_questions"] == OFF_TOPIC * len(corpora)
    assert fitted["questions"] == tune + fitted["off_topic_questions"]
