"""The bundled Gemma 3 270M as a judge of evidence, tried on the tune split.

    python benchmarks/llm_judge.py

Every tune question (and the off-topic ones) is featurised and scored out of fold as
``python -m rag.train`` does (:func:`rag.train.collect`, :func:`rag.train.out_of_fold`).  For
each question's three best sentences Gemma is asked, in two wordings, whether the sentence
answers the question, and its yes/no margin is read from the next-token logits ("Yes"/"yes"
against "No"/"no", log-sum-exp).  The margin is compared with what the shipped models already
know:

- sentence level: how well it tells evidence from the other two of the best three (AUC), and
  how often the sentence it prefers among the three is evidence, against the model's top-1;
- question level: how well the best sentence's margin tells answerable questions from
  near-topic unanswerable ones (AUC), against the answerable model's out-of-fold probability
  and the typed rule's score.

A margin near 0.5 AUC carries nothing the decision could use.  Tune split only: the test split
is never read.  Writes benchmarks/results/llm_judge.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from common import table, write  # noqa: E402

from rag import train as T  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.generators import bundled_gguf, gemma_prompt  # noqa: E402

WORDINGS = {
    "passage_first": "Passage: {s}\n\nQuestion: {q}\n\nDoes the passage answer the question? Answer yes or no.",
    "question_first": "Question: {q}\n\nPassage: {s}\n\nIs the answer to the question stated in the passage? "
                      "Answer Yes or No.",
}
TOP = 3            # best sentences judged per question
MAX_CHARS = 1200   # a sentence longer than this is cut (a few run-on PDF "sentences")


class Judge:
    """Gemma's yes/no margin for a question and a sentence, from its next-token logits."""

    def __init__(self) -> None:
        from llama_cpp import Llama

        path = bundled_gguf(Settings().paths.cache_dir)
        self.llm = Llama(model_path=str(path), n_ctx=1024, n_threads=os.cpu_count() or 2, verbose=False, seed=0)
        self.vocab = self.llm.n_vocab()
        tok = lambda w: self.llm.tokenize(w.encode(), add_bos=False, special=False)[0]  # noqa: E731
        self.yes = [tok("Yes"), tok("yes")]
        self.no = [tok("No"), tok("no")]

    def margin(self, wording: str, question: str, sentence: str) -> float:
        prompt = gemma_prompt(wording.format(q=question, s=sentence[:MAX_CHARS]))
        self.llm.reset()
        self.llm.eval(self.llm.tokenize(prompt.encode(), add_bos=True, special=True))
        # llama-cpp-python keeps no logits unless logits_all (a row per context token); the
        # context's own buffer holds the last token's.
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.vocab,))
        return float(np.logaddexp.reduce(logits[self.yes]) - np.logaddexp.reduce(logits[self.no]))


def main() -> int:
    alpha, _ = T.choose_alpha("tune")
    examples = T.collect("tune", progress=False, alpha=alpha)
    o = T.out_of_fold(examples)
    judge = Judge()
    start, calls = time.perf_counter(), 0
    judged = []  # per question: [(label, model score, {wording: margin})] for the best TOP sentences
    for e, scored in zip(examples, o.scored):
        label = {c.text: lab for c, lab in zip(e.candidates, e.labels)}
        rows = []
        for c in scored[:TOP]:
            rows.append((label.get(c.text, 0), c.score,
                         {w: judge.margin(t, e.question, c.text) for w, t in WORDINGS.items()}))
            calls += len(WORDINGS)
        judged.append(rows)
    per_call = (time.perf_counter() - start) / max(calls, 1)

    answerable = [n for n, e in enumerate(examples) if e.answerable and judged[n]]
    near = np.array([n for n, e in enumerate(examples) if not e.answerable and not o.off[n] and judged[n]])
    pool = np.concatenate([np.array(answerable), near])
    y_q = o.qy[pool]
    out = []
    base = {"judge": "shipped models",
            "sentence_auc": T._auc(np.array([r[0] for n in answerable for r in judged[n]]),
                                   np.array([r[1] for n in answerable for r in judged[n]])),
            "top1_of_best3": float(np.mean([judged[n][0][0] for n in answerable])),
            "answerable_auc": T._auc(y_q, o.q_oof[pool]),
            "typed_rule_auc": T._auc(y_q, o.top_typed[pool])}
    out.append(base)
    for w in WORDINGS:
        out.append({"judge": f"Gemma, {w}",
                    "sentence_auc": T._auc(np.array([r[0] for n in answerable for r in judged[n]]),
                                           np.array([r[2][w] for n in answerable for r in judged[n]])),
                    "top1_of_best3": float(np.mean([max(judged[n], key=lambda r: r[2][w])[0] for n in answerable])),
                    "answerable_auc": T._auc(y_q, np.array([judged[n][0][2][w] for n in pool]))})
    out = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in out]
    print(table(out, ["judge", "sentence_auc", "top1_of_best3", "answerable_auc", "typed_rule_auc"]))
    print(f"{calls} calls, {per_call * 1000:.0f} ms each")
    path = write("llm_judge", {
        "split": "tune", "questions": len(examples), "answerable": len(answerable), "near_topic": int(len(near)),
        "sentences_per_question": TOP, "ms_per_call": round(per_call * 1000, 1),
        "note": "sentence_auc: evidence against the other best-three sentences of answerable questions; "
                "answerable_auc: answerable against near-topic unanswerable questions, on the best "
                "sentence; model scores out of fold, folds grouped by document", "rows": out})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
