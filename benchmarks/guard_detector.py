"""How well instruction-like sentences are told from ordinary ones, on held-out data.

    python benchmarks/guard_detector.py

Data: ``eval/guard/injections.jsonl`` (attack sentences in many styles and ten
languages, split by template idea), ``eval/guard/ordinary.jsonl`` (ordinary
sentences of real documents picked because they are directive, split by source
document) and ``eval/guard/ordinary_harvest.jsonl`` (a broad sample of manuals
and package documentation in nine languages, split by document; written by
``python eval/guard/harvest.py``).
Detectors compared on the ``test`` split:

- ``patterns``: the patterns of :mod:`rag.guard` alone;
- ``shipped``: :func:`rag.guard.is_instruction` (a pattern, or the shipped model of
  ``python -m rag.guard_train`` at its threshold);
- ``ngrams``: logistic regression over :func:`rag.guard.features` (hashed character
  3-5-grams and word 1-2-grams of the normalised sentence, plus the patterns as features),
  deciding alone;
- ``ngrams+minilm``: the same plus the sentence's MiniLM embedding.

Learned detectors are fitted on ``train`` only (directive ordinary sentences weigh
5x); their threshold is the lowest that masks at most 1 % (and, in a second row,
2 %) of the directive and 0.5 % of the sampled ordinary sentences out of fold
(5 folds grouped like the split).  "disguised" rows score the attacks again after
swapping Latin letters for Cyrillic look-alikes and inserting zero-width spaces.
"seed sentences masked" is the share of all sentences of the two seed reports (real,
ordinary text with headings, credits, references and a French page) that a detector masks.
Writes benchmarks/results/guard_detector.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import table, write  # noqa: E402

from rag.guard import _COMPILED, is_instruction, normalise  # noqa: E402

PATTERNS = _COMPILED


def disguise(text: str, seed: int) -> str:
    """Cyrillic look-alikes for half the a/e/o/p/c/i/x letters, zero-width spaces inside words."""
    rng = np.random.default_rng(seed)
    swap = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і", "I": "І", "x": "х"}
    out = []
    for ch in text:
        out.append(swap[ch] if ch in swap and rng.random() < 0.5 else ch)
        if ch.isalpha() and rng.random() < 0.08:
            out.append("\u200b")
    return "".join(out)


def ngram_matrix(texts: list[str]):  # noqa: ANN201 - scipy sparse
    from rag.guard_train import matrix

    return matrix(texts)


def main() -> int:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    from rag.config import Settings
    from rag.embeddings import embedder_for

    from rag.sentences import sentence_spans

    seeds = Path(__file__).resolve().parent.parent / "seeds"
    seed_sentences = [t[a:b] for f in sorted(seeds.glob("*.txt")) for t in [f.read_text(encoding="utf-8")]
                      for a, b in sentence_spans(t)]
    from rag.guard_train import load

    train, test = load("train"), load("test")
    attacks = [r for r in test if r["label"] == 1]
    disguised = [disguise(r["text"], n) for n, r in enumerate(attacks)]
    settings = Settings()
    embedder = embedder_for(settings.embedding)

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(embedder.embed_documents([normalise(t) for t in texts]))

    def feats(texts: list[str], minilm: bool):  # noqa: ANN202
        x = ngram_matrix(texts)
        return hstack([x, csr_matrix(embed(texts))]).tocsr() if minilm else x

    out: list[dict[str, Any]] = []

    def record(name: str, flag_test: np.ndarray, flag_disguised: np.ndarray, flag_seeds: np.ndarray,
               extra: dict[str, Any]) -> None:
        kinds = np.array([r["set"] for r in test])
        out.append({"detector": name, **extra,
                    "seed_sentences": len(seed_sentences),
                    "seed_sentences_masked": round(float(flag_seeds.mean()), 4),
                    "test_attacks": int((kinds == "attack").sum()),
                    "test_ordinary_directive": int((kinds == "hard").sum()),
                    "test_ordinary_sampled": int((kinds == "broad").sum()),
                    "attacks_missed": round(float((~flag_test[kinds == "attack"]).mean()), 4),
                    "disguised_attacks_missed": round(float((~flag_disguised).mean()), 4),
                    "ordinary_masked": round(float(flag_test[kinds == "hard"].mean()), 4),
                    "sampled_ordinary_masked": round(float(flag_test[kinds == "broad"].mean()), 4),
                    "ordinary_masked_examples": [r["text"] for r, f in zip(test, flag_test)
                                                 if f and r["set"] != "attack"][:10]})

    def matched(text: str) -> bool:
        return any(p.search(normalise(text)) for p in PATTERNS)

    record("patterns", np.array([matched(r["text"]) for r in test]),
           np.array([matched(t) for t in disguised]), np.array([matched(t) for t in seed_sentences]),
           {"threshold": None})
    record("shipped", np.array([is_instruction(r["text"]) for r in test]),
           np.array([is_instruction(t) for t in disguised]), np.array([is_instruction(t) for t in seed_sentences]),
           {"threshold": "patterns, or the model's probability >= the threshold in rag/models/guard.npz"})
    y_train = np.array([r["label"] for r in train])
    kinds = np.array([r["set"] for r in train])
    # The few directive ordinary sentences set the threshold; they weigh more in the fit.
    weight = np.where(kinds == "hard", 5.0, 1.0)
    groups = [r["group"] for r in train]
    for minilm in (False, True):
        name = "ngrams+minilm" if minilm else "ngrams"
        x = feats([r["text"] for r in train], minilm)
        oof = np.zeros(len(train))
        for a, b in GroupKFold(n_splits=5).split(x, y_train, groups):
            fold = LogisticRegression(C=10.0, max_iter=5000, class_weight="balanced")
            oof[b] = fold.fit(x[a], y_train[a], sample_weight=weight[a]).predict_proba(x[b])[:, 1]
        model = LogisticRegression(C=10.0, max_iter=5000, class_weight="balanced").fit(x, y_train,
                                                                                      sample_weight=weight)
        p_test = model.predict_proba(feats([r["text"] for r in test], minilm))[:, 1]
        p_disguised = model.predict_proba(feats(disguised, minilm))[:, 1]
        p_seeds = model.predict_proba(feats(seed_sentences, minilm))[:, 1]
        for budget in (0.01, 0.02):
            ok = [t for t in np.arange(0.05, 0.996, 0.005)
                  if (oof[kinds == "hard"] >= t).mean() <= budget and (oof[kinds == "broad"] >= t).mean() <= 0.005]
            t = float(min(ok)) if ok else 0.995
            record(name, p_test >= t, p_disguised >= t, p_seeds >= t,
                   {"threshold": round(t, 3), "ordinary_budget_out_of_fold": budget,
                    "oof_attacks_missed": round(float((oof[kinds == "attack"] < t).mean()), 4)})
    print(table(out, ["detector", "threshold", "attacks_missed", "disguised_attacks_missed", "ordinary_masked",
                      "sampled_ordinary_masked", "seed_sentences_masked"]))
    path = write("guard_detector", {"split": "test", "train_sentences": len(train), "test_sentences": len(test),
                                    "rows": out})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
