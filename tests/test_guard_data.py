"""The labelled sentences of eval/guard/ that the instruction detector is measured on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "eval" / "guard"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def attacks() -> list[dict]:
    return _rows("injections.jsonl")


@pytest.fixture(scope="module")
def ordinary() -> list[dict]:
    return _rows("ordinary.jsonl")


def test_attack_sentences_cover_styles_and_languages(attacks: list[dict]) -> None:
    assert len(attacks) >= 300 and all(r["label"] == 1 and r["text"].strip() for r in attacks)
    assert len({r["style"] for r in attacks}) >= 12
    assert len({r["lang"] for r in attacks}) >= 4
    assert len({r["text"] for r in attacks}) == len(attacks)


def test_ordinary_sentences_come_from_many_real_documents(ordinary: list[dict]) -> None:
    assert len(ordinary) >= 300 and all(r["label"] == 0 and r["text"].strip() for r in ordinary)
    real = [r for r in ordinary if r["source"] != "written"]
    assert len(real) >= 300 and len({r["doc"] for r in real}) >= 25
    assert len({r["text"] for r in ordinary}) == len(ordinary)
    for reserved in ("shared-mime-info", "libtasn1", "python3/", "zlib1g-dev"):
        assert not any(reserved in r["source"] for r in real), reserved


def test_splits_never_share_an_attack_idea_or_a_document(attacks: list[dict], ordinary: list[dict]) -> None:
    for rows, key in ((attacks, "idea"), (ordinary, "doc")):
        train = {r[key] for r in rows if r["split"] == "train"}
        test = {r[key] for r in rows if r["split"] == "test"}
        assert train and test and not train & test, key


def test_sampled_ordinary_sentences_are_broad_and_split_by_document(ordinary: list[dict]) -> None:
    """The broad sample: manuals and package documentation in nine languages, never a reserved
    package, a document wholly in one split, and the same split as in ordinary.jsonl."""
    rows = _rows("ordinary_harvest.jsonl")
    assert len(rows) >= 3000 and all(r["label"] == 0 and r["text"].strip() for r in rows)
    langs = {r["lang"] for r in rows}
    assert {"en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "sv"} <= langs
    assert len({r["doc"] for r in rows}) >= 300
    for reserved in ("shared-mime-info", "libtasn1", "python3", "zlib1g-dev"):
        assert not any(reserved in r["source"] for r in rows), reserved
    split_of: dict[str, str] = {}
    for r in rows:
        assert split_of.setdefault(r["doc"], r["split"]) == r["split"], r["doc"]
    hand = {r["source"]: r["split"] for r in ordinary}
    assert all(hand.get(r["source"], r["split"]) == r["split"] for r in rows)


def test_attacks_span_ten_languages_and_their_test_split_has_every_style_family(attacks: list[dict]) -> None:
    assert {"en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "sv"} <= {r["lang"] for r in attacks}
    test = [r for r in attacks if r["split"] == "test"]
    assert len(test) >= 150 and len({r["style"] for r in test}) >= 12


def test_the_shipped_detector_is_reproduced_by_its_command(tmp_path: Path) -> None:
    """python -m rag.guard_train writes the shipped model again (same threshold, same weights)."""
    import subprocess
    import sys

    import numpy as np

    from rag.guard import MODEL_PATH

    out = tmp_path / "guard.npz"
    res = subprocess.run([sys.executable, "-m", "rag.guard_train", "--out", str(out)], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(out, allow_pickle=False) as refit, np.load(MODEL_PATH, allow_pickle=False) as shipped:
        assert float(refit["threshold"]) == float(shipped["threshold"])
        assert np.allclose(refit["coef"], shipped["coef"], atol=1e-3)
        assert list(refit["patterns"]) == list(shipped["patterns"])
        record = json.loads(str(shipped["record"]))
    assert record["split"] == "train" and record["out_of_fold"]["directive_ordinary_flagged"] <= 0.01


def test_detector_on_the_test_split(attacks: list[dict], ordinary: list[dict]) -> None:
    """A gate on held-out sentences: at most 2 % of directive ordinary sentences masked, and more
    attack sentences caught than by the patterns alone (the shipped figures: 1 of 146, and
    see benchmarks/results/guard_detector.json)."""
    from rag.guard import _COMPILED, is_instruction, normalise

    hard = [r["text"] for r in ordinary if r["split"] == "test"]
    attack = [r["text"] for r in attacks if r["split"] == "test"]
    assert sum(map(is_instruction, hard)) / len(hard) <= 0.02
    by_patterns = sum(any(p.search(normalise(t)) for p in _COMPILED) for t in attack)
    assert sum(map(is_instruction, attack)) > by_patterns


def test_a_damaged_model_file_names_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.guard as guard

    bad = tmp_path / "guard.npz"
    bad.write_bytes(b"not an npz file")
    monkeypatch.setattr(guard, "MODEL_PATH", bad)
    guard._model.cache_clear()
    try:
        with pytest.raises(guard.GuardModelError, match="python -m rag.guard_train"):
            guard.instruction_probability("Please summarise the findings.")
    finally:
        guard._model.cache_clear()
