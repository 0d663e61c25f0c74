"""Would a MiniLM cross-encoder fine-tuned on the tune split choose evidence better than the
shipped logistic model?  (The QA collection's issue asks to ship one only if it beats the model
on the test split.)

    python benchmarks/cross_encoder.py [EPOCHS]

Every question of the collection's tune and test splits is retrieved and its candidate
sentences featurised exactly as ``python -m rag.train`` does (:func:`rag.train.collect`).  The
bundled all-MiniLM-L6-v2 gets a linear head over its mean-pooled output and is fine-tuned on
the tune split's (question, sentence) pairs: every evidence sentence, the 8 non-evidence
sentences the shipped model ranks highest and 4 others at random per question, binary
cross-entropy, AdamW at 3e-5 with warm-up and linear decay, batches of 16, ``EPOCHS`` passes
(default 2), seed 0.  On the test split's answerable questions it then reports how often the
top-ranked sentence is evidence for: the shipped model, the cross-encoder alone, the shipped
model's log-odds plus w × the cross-encoder's logit, and the shipped model's top n re-ranked by
the cross-encoder; and the AUC of the best sentence's score for answerable against
unanswerable questions.  Needs torch and transformers (the test extra).  Writes
benchmarks/results/cross_encoder.json.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from common import write  # noqa: E402

from rag.embeddings import bundled_model_path  # noqa: E402
from rag.evidence import FEATURES  # noqa: E402
from rag.learned import LogisticModel, load_models  # noqa: E402
from rag.train import Example, collect  # noqa: E402

MAX_LENGTH = 128
HARD_NEGATIVES = 8
RANDOM_NEGATIVES = 4
BATCH = 16


def _pairs(examples: list[Example], shipped: dict[int, np.ndarray], rnd: random.Random) -> list[tuple[str, str, float]]:
    out = []
    for e in examples:
        p = shipped[id(e)]
        neg = sorted((i for i, lab in enumerate(e.labels) if not lab), key=lambda i: -p[i])
        rest = neg[HARD_NEGATIVES:]
        chosen = neg[:HARD_NEGATIVES] + rnd.sample(rest, min(RANDOM_NEGATIVES, len(rest)))
        out += [(e.question, e.candidates[i].text, 1.0) for i, lab in enumerate(e.labels) if lab]
        out += [(e.question, e.candidates[i].text, 0.0) for i in chosen]
    return out


def main() -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    rnd = random.Random(0)
    model_dir = bundled_model_path()
    tune, test = collect("tune", progress=False), collect("test", progress=False)
    logistic = LogisticModel.from_dict(load_models()["evidence"], FEATURES)
    shipped = {id(e): (logistic.proba(np.array([c.features for c in e.candidates])) if e.candidates
                       else np.zeros(0)) for e in tune + test}

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir))
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)

        def forward(self, enc: dict) -> torch.Tensor:
            h = self.bert(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            return self.head((h * m).sum(1) / m.sum(1)).squeeze(-1)

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = CrossEncoder()
    enc = lambda b: dict(tok([p[0] for p in b], [p[1] for p in b], truncation=True, max_length=MAX_LENGTH,  # noqa: E731
                             padding=True, return_tensors="pt"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
    steps = epochs * -(-len(_pairs(tune, shipped, random.Random(0))) // BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / (0.1 * steps)) * max(0.0, 1 - s / steps))
    started = time.perf_counter()
    for epoch in range(epochs):
        pairs = _pairs(tune, shipped, rnd)
        rnd.shuffle(pairs)
        model.train()
        for i in range(0, len(pairs), BATCH):
            b = pairs[i:i + BATCH]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(enc(b)), torch.tensor([p[2] for p in b]))
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
        print(f"epoch {epoch + 1}/{epochs}: {len(pairs)} pairs, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    train_s = time.perf_counter() - started

    model.eval()
    pairs = [(e.question, c.text, 0.0) for e in test for c in e.candidates]
    started = time.perf_counter()
    with torch.no_grad():
        logits = np.concatenate([model(enc(pairs[i:i + 64])).numpy() for i in range(0, len(pairs), 64)])
    score_s = time.perf_counter() - started
    ce, k = {}, 0
    for e in test:
        ce[id(e)] = logits[k:k + len(e.candidates)]
        k += len(e.candidates)

    answerable = [e for e in test if e.answerable and e.candidates]
    def top1(score) -> float:  # noqa: ANN001
        return round(float(np.mean([e.labels[int(np.argmax(score(e)))] for e in answerable])), 4)
    def log_odds(e: Example) -> np.ndarray:
        p = np.clip(shipped[id(e)], 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))
    def rerank(n: int):  # noqa: ANN202
        def score(e: Example) -> np.ndarray:
            keep = np.argsort(-shipped[id(e)])[:n]
            out = np.full(len(e.candidates), -np.inf)
            out[keep] = ce[id(e)][keep]
            return out
        return score
    from sklearn.metrics import roc_auc_score
    decided = [e for e in test if e.candidates]
    y = [int(e.answerable) for e in decided]
    write("cross_encoder", {
        "command": "python benchmarks/cross_encoder.py " + str(epochs),
        "split": "fitted on tune, measured on test",
        "tune_questions": len(tune), "test_answerable_questions": len(answerable),
        "evidence_among_candidates": round(float(np.mean([any(e.labels) for e in answerable])), 4),
        "top1_is_evidence": {
            "shipped_logistic": top1(lambda e: shipped[id(e)]),
            "cross_encoder": top1(lambda e: ce[id(e)]),
            **{f"logistic_log_odds_plus_{w}_x_cross_encoder": top1(lambda e, w=w: log_odds(e) + w * ce[id(e)])
               for w in (0.25, 0.5, 1.0, 2.0)},
            **{f"logistic_top{n}_reranked_by_cross_encoder": top1(rerank(n)) for n in (3, 5, 10)},
        },
        "answerable_auc_of_best_sentence": {
            "shipped_logistic": round(float(roc_auc_score(y, [shipped[id(e)].max() for e in decided])), 4),
            "cross_encoder": round(float(roc_auc_score(y, [ce[id(e)].max() for e in decided])), 4),
        },
        "epochs": epochs, "train_seconds": round(train_s, 1),
        "test_pairs_scored": len(pairs), "torch_pairs_per_second": round(len(pairs) / score_s, 1),
    })


if __name__ == "__main__":
    main()
