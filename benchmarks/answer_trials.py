"""Changes to evidence selection and the answer-or-abstain decision, tried on the tune split.

    python benchmarks/answer_trials.py

Every tune question (and the off-topic ones) is featurised as ``python -m rag.train`` does
(:func:`rag.train.collect`), and each trial is scored out of fold, folds grouped by document
(:func:`rag.train.out_of_fold`): the evidence model's AUC and how often its best sentence is
evidence (top-1, answerable questions), the answerable model's AUC, and the decision's rates with
thresholds chosen on four folds and applied to the fifth (as ``benchmarks/decision_targets.py``).
Trials:

- ``shipped``: the shipped features and decision;
- ``learned_similarity``: a logistic model over the element-wise product of the question's and
  the sentence's MiniLM vectors (a learned weighting of cosine similarity), fitted per fold and
  added as a feature;
- ``counted_noun``: for number questions, whether a number in the sentence stands within three
  words of the noun asked about ("How many *rounds*" → "20 rounds");
- ``value_window``: the share of the question's key terms (weighted by rarity) within six words
  of a value of the asked kind;
- ``previous_sentence``: the similarity of the sentence before (and its gap to the best, and
  whether it is the best-matching one), for answers that go on from a sentence naming the topic
  ("… includes per-territory orthographies." → "This includes Azerbaijani, …");
- ``more_name_nouns``: "path", "RFC", "standard", "specification", "parameter", "switch",
  "constant", "method", "routine" and "header" also read as asking for a name ("What is the path
  of …", "Which RFC …");
- ``name_shapes``: a question asking for a path or file, an option, a variable, a function or a
  standard needs a name of that shape (``/etc/x.conf``, ``--keep``, ``HOME_DIR``, ``bz_open()``,
  ``RFC 7539``) for the sentence to count as stating it, instead of any name-like token;
- ``more_name_nouns_and_shapes``: both;
- ``ablated_copies``: the answerable model also fitted on a copy of every answerable question
  retrieved with its evidence passages removed, labelled unanswerable;
- ``typed_top3``: a typed question answered when any of the three best sentences states the
  asked kind (not only the best);
- ``answer_right_label``: the answerable model fitted to "answerable and the best sentence is
  evidence" instead of "answerable";
- ``pairwise_ranking`` (top-1 only): evidence ranked by a logistic model over feature differences
  of evidence and non-evidence sentence pairs of each question.

Tune split only: the test split is never read.  Writes benchmarks/results/answer_trials.json.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from common import table, write  # noqa: E402

from rag import train as T  # noqa: E402
from rag.abstention import QUESTION_FEATURES, question_features  # noqa: E402
from rag.answer_types import expected_type, value_spans, values  # noqa: E402
from rag.evidence import FEATURES, Candidate, key_terms  # noqa: E402
from rag.lexical import stem_spans, tokenize  # noqa: E402
from rag.metrics import covers  # noqa: E402

REACH = 6       # words either side of a value for value_window
COUNTED = 3     # words between a number and the counted noun for counted_noun


def nested(o: T.OutOfFold) -> dict[str, float | None]:
    """Decision rates with thresholds chosen on four folds and applied to the fifth."""
    near, off = (o.qy == 0) & ~o.off, o.off
    held = T.held_out_decisions(o)
    return {"answered": float(held[o.qy == 1].mean()), "near_topic_declined": float((~held[near]).mean()),
            "off_topic_declined": float((~held[off]).mean()) if off.any() else None}


def row(name: str, examples: list[T.Example], o: T.OutOfFold) -> dict[str, object]:
    return {"trial": name, "evidence_auc": T._auc(o.y, o.evidence_oof),
            "top1": T.top1_is_evidence(examples, o.scored),
            "answerable_auc": T._auc(o.qy, o.q_oof), **nested(o)}


def with_feature(examples: list[T.Example], name: str,
                 value: Callable[[T.Example, Candidate], float]) -> tuple[list[T.Example], tuple[str, ...]]:
    """Copies of ``examples`` whose candidates carry one more feature."""
    out = [replace(e, candidates=[replace(c, features=c.features + (value(e, c),)) for c in e.candidates])
           for e in examples]
    return out, FEATURES + (name,)


def counted_noun(e: T.Example, c: Candidate) -> float:
    q = " ".join(e.question.lower().split())
    if expected_type(q) != "number":
        return 0.0
    import re
    m = re.search(r"\bhow (?:many|much)\s+((?:(?!(?:does|do|did|is|are|was|were|can|could|should|will|would|"
                  r"has|have|had|must|may|might)\b)[\w.+-]+\s+){0,3})", q)
    nouns = set(tokenize(m.group(1))) if m else set()
    if not nouns:
        return 0.0
    asked = values("number", q)
    toks = stem_spans(c.text)
    for a, b in value_spans("number", c.text):
        if c.text[a:b].strip().lower() in asked:
            continue
        after = [s for x, _, s in toks if x >= b][:COUNTED]
        before = [s for _, y, s in toks if y <= a][-COUNTED:]
        if nouns & (set(after) | set(before)):
            return 1.0
    return 0.0


def value_window(examples: list[T.Example]) -> Callable[[T.Example, Candidate], float]:
    idf_of: dict[int, dict[str, float]] = {}
    for e in examples:
        toks = [set(tokenize(c.text)) for c in e.candidates]
        idf_of[id(e)] = {t: math.log(1 + len(toks) / (1 + sum(t in s for s in toks))) for t in key_terms(e.question)}

    def value(e: T.Example, c: Candidate) -> float:
        kind = expected_type(e.question)
        idf = idf_of[id(e)]
        if not kind or not idf or not c.typed:
            return 0.0
        total = sum(idf.values()) or 1.0
        asked = values(kind, e.question)
        toks = stem_spans(c.text)
        best = 0.0
        for a, b in value_spans(kind, c.text):
            if c.text[a:b].strip().lower() in asked:
                continue
            before = [n for n, (_, y, _) in enumerate(toks) if y <= a]
            after = [n for n, (x, _, _) in enumerate(toks) if x >= b]
            lo = before[-REACH] if len(before) >= REACH else 0
            hi = after[REACH - 1] if len(after) >= REACH else len(toks) - 1
            window = {toks[n][2] for n in range(lo, hi + 1)}
            best = max(best, sum(w for t, w in idf.items() if t in window) / total)
        return best
    return value


def previous_sentence(examples: list[T.Example]) -> tuple[list[T.Example], tuple[str, ...]]:
    """Three features of the sentence before each candidate in its passage (the nearest earlier
    candidate of the same passage; sentences too short to be candidates are skipped): its MiniLM
    similarity, that less the best similarity, and whether it is the best-matching sentence."""
    out = []
    for e in examples:
        best = max(e.candidates, key=lambda c: c.similarity, default=None)
        cands = []
        for c in e.candidates:
            before = [p for p in e.candidates if p.hit_index == c.hit_index and p.end <= c.start]
            prev = max(before, key=lambda p: p.end, default=None)
            sim = prev.similarity if prev else 0.0
            gap = sim - best.similarity if prev and best else -1.0
            cands.append(replace(c, features=c.features + (sim, gap, float(prev is not None and prev is best))))
        out.append(replace(e, candidates=cands))
    return out, FEATURES + ("previous_similarity", "previous_similarity_gap", "follows_best")


#: ``more_name_nouns``: nouns a name question may ask for, besides the shipped ones.
MORE_NAME_NOUNS = "path|rfc|standard|specification|parameter|switch|constant|method|routine|header"
#: ``name_shapes``: for a question asking for one of these, the shape the name must have.
NAME_SHAPES = [
    (re.compile(r"\b(?:path|directory|folder|file)$"),
     re.compile(r"(?:~|\.{1,2})?/[\w.+<>-][\w./+<>-]*|\b[\w+-]+\.[a-z][a-z0-9]{0,4}\b")),
    (re.compile(r"\b(?:option|flag|switch|argument|parameter)$"), re.compile(r"(?<![\w-])--?[a-zA-Z][\w-]*|\b\w+=\S+")),
    (re.compile(r"\b(?:variable|constant|macro)$"), re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\$\{?\w+|\b[A-Z][A-Z0-9]{2,}\b")),
    (re.compile(r"\b(?:function|method|routine)$"), re.compile(r"\b\w+_\w+\b|\b\w+\(\)|\b[a-z]+[A-Z]\w*\b")),
    (re.compile(r"\b(?:rfc|standard|specification)$"),
     re.compile(r"\bRFC[\s-]?\d+|\b(?:ISO|IEC|IEEE|ANSI|POSIX|NIST|FIPS|ECMA)\b[\s/-]*[\w.-]*\d")),
]


@contextmanager
def name_questions(nouns: bool, shapes: bool) -> Iterator[None]:
    """Featurise with more nouns read as asking for a name, and/or with a name of the asked shape
    (a path, option, variable, function or standard's number) required for the typed flag."""
    import rag.answer_types as at
    import rag.evidence as ev

    asks, has_type = list(at._ASKS), ev.has_type
    if nouns:
        kind, pattern = at._ASKS[-1]
        at._ASKS[-1] = (kind, re.compile(pattern.pattern.replace("(?:name|option|", f"(?:name|option|{MORE_NAME_NOUNS}|")))

    def shaped(sentence: str, kind: str | None, question: str = "") -> bool:
        if kind == "name":
            m = at._ASKS[-1][1].search(" ".join(question.lower().split()))
            shape = next((s for noun, s in NAME_SHAPES if m and noun.search(m.group())), None)
            if shape is not None:
                asked = {v.lower() for v in shape.findall(question)}
                return any(v.lower() not in asked for v in shape.findall(sentence))
        return has_type(sentence, kind, question)

    if shapes:
        ev.has_type = shaped
    try:
        yield
    finally:
        at._ASKS[:] = asks
        ev.has_type = has_type


def learned_similarity(examples: list[T.Example]) -> tuple[list[T.Example], tuple[str, ...]]:
    """Stacked: per sentence fold, a logistic model over q⊙s fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression

    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.evidence import SentenceEmbeddings

    embedder = embedder_for(Settings().embedding)
    embed = SentenceEmbeddings(embedder)
    rows = [(e, i) for e in examples for i in range(len(e.candidates))]
    qv = {id(e): np.asarray(embedder.embed_query(e.question), dtype=np.float32) for e in examples}
    product = np.vstack([qv[id(e)] * embed([e.candidates[i].text])[0] for e, i in rows])
    y = np.array([e.labels[i] for e, i in rows])
    folds = np.array(T._folds([e.group for e, _ in rows]))
    score = np.zeros(len(rows))
    for fold in np.unique(folds):
        train = folds != fold
        clf = LogisticRegression(C=0.03, max_iter=3000).fit(product[train] * 10, y[train])
        score[~train] = clf.decision_function(product[~train] * 10)
    by_candidate = {id(e.candidates[i]): float(s) for (e, i), s in zip(rows, score)}
    return with_feature(examples, "learned_similarity", lambda e, c: by_candidate[id(c)])


def ablated(alpha: float) -> list[T.Example]:
    """Every answerable tune question again, retrieved with its evidence passages removed."""
    from rag.collection import corpus_index, load_collection
    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.evidence import EvidenceRanker
    from rag.retrieval import Retriever
    from rag.store import IndexStore

    settings = Settings()
    embedder = embedder_for(settings.embedding)
    ranker = EvidenceRanker(embedder)
    out = []
    for corpus in load_collection():
        items = [i for i in corpus.items("tune") if i.answerable]
        if not items:
            continue
        store = IndexStore.load(corpus_index(corpus, settings, embedder), model_id=embedder.model_id, dim=embedder.dim)
        retriever = Retriever(store, embedder, alpha=alpha)
        ranker.embed.use(store.sentences)
        k = settings.retrieval.k
        for item in items:
            quotes = [e["quote"] for e in item.evidence]
            hits = [h for h in retriever.search(item.question, k + 15, settings.retrieval.mode)
                    if not any(covers(h.chunk.text, q) for q in quotes)][:k]
            cands = ranker.featurise(item.question, hits)
            out.append(T.Example(item.id + "#ablated", item.question, f"{corpus.name}/{(item.docs or ['-'])[0]}",
                                 False, cands, [0] * len(cands), [], store.lexical.has_term))
    return out


def with_ablated_copies(examples: list[T.Example], o: T.OutOfFold, alpha: float) -> T.OutOfFold:
    """``o`` with the answerable model refitted per fold on the questions and the ablated copies."""
    from sklearn.linear_model import LogisticRegression

    copies = ablated(alpha)
    rows = [(e, i) for e in examples for i in range(len(e.candidates))]
    fold_of = {e.group: f for (e, _), f in zip(rows, T._folds([e.group for e, _ in rows]))}
    models = {f: T._fit(o.x[np.array([fold_of[e.group] != f for e, _ in rows])],
                        o.y[np.array([fold_of[e.group] != f for e, _ in rows])], o.evidence_c, FEATURES)
              for f in set(fold_of.values())}
    cx = []
    for e in copies:
        p = models[fold_of[e.group]].proba(np.array([c.features for c in e.candidates])) if e.candidates else []
        s = sorted((replace(c, score=float(v)) for c, v in zip(e.candidates, p)), key=lambda c: -c.score)
        f = question_features(e.question, s, e.in_corpus)
        cx.append([f[n] for n in QUESTION_FEATURES])
    cx_arr = np.array(cx)
    q_fold_of = dict(zip((e.group for e in examples), o.q_folds))
    c_folds = np.array([q_fold_of[e.group] for e in copies])
    best = None
    for c in T.C_GRID:
        p = np.zeros(len(o.qy))
        for fold in np.unique(o.q_folds):
            train, extra = o.q_folds != fold, c_folds != fold
            x = np.vstack([o.qx[train], cx_arr[extra]])
            y = np.concatenate([o.qy[train], np.zeros(extra.sum())])
            mean, scale = x.mean(axis=0), x.std(axis=0)
            scale[scale == 0] = 1.0
            clf = LogisticRegression(C=c, max_iter=3000).fit((x - mean) / scale, y)
            p[~train] = clf.predict_proba((o.qx[~train] - mean) / scale)[:, 1]
        loss = T._log_loss(o.qy, p)
        if best is None or loss < best[0]:
            best = (loss, c, p)
    assert best is not None
    return replace(o, answerable_c=best[1], q_oof=best[2])


def pairwise_top1(examples: list[T.Example], o: T.OutOfFold) -> float:
    from sklearn.linear_model import LogisticRegression

    qid = np.array([id(e) for e, _ in o.rows])
    folds = np.array(T._folds([e.group for e, _ in o.rows]))
    mean, scale = o.x.mean(axis=0), o.x.std(axis=0)
    scale[scale == 0] = 1.0
    xs = (o.x - mean) / scale
    score = np.zeros(len(o.y))
    for fold in np.unique(folds):
        train = folds != fold
        diffs, labels = [], []
        for q in np.unique(qid[train]):
            rows = np.where((qid == q) & train)[0]
            pos, neg = rows[o.y[rows] == 1], rows[o.y[rows] == 0]
            neg = neg[np.argsort(-o.evidence_oof[neg])][:20]   # the hardest non-evidence
            for a in pos:
                for b in neg:
                    diffs += [xs[a] - xs[b], xs[b] - xs[a]]
                    labels += [1, 0]
        clf = LogisticRegression(C=0.1, max_iter=3000, fit_intercept=False).fit(np.array(diffs), np.array(labels))
        score[~train] = xs[~train] @ clf.coef_[0]
    scored: list[list[Candidate]] = [[] for _ in examples]
    index = {id(e): n for n, e in enumerate(examples)}
    for (e, i), s in zip(o.rows, score):
        scored[index[id(e)]].append(replace(e.candidates[i], score=float(s)))
    for s in scored:
        s.sort(key=lambda c: -c.score)
    return T.top1_is_evidence(examples, scored)


def main() -> int:
    alpha, _ = T.choose_alpha("tune")
    examples = T.collect("tune", progress=False, alpha=alpha)
    base = T.out_of_fold(examples)
    rows = [row("shipped", examples, base)]
    for name, (ex, names) in (("learned_similarity", learned_similarity(examples)),
                              ("counted_noun", with_feature(examples, "counted_noun", counted_noun)),
                              ("value_window", with_feature(examples, "value_window", value_window(examples))),
                              ("previous_sentence", previous_sentence(examples))):
        rows.append(row(name, ex, T.out_of_fold(ex, names)))
    for name, nouns, shapes in (("more_name_nouns", True, False), ("name_shapes", False, True),
                                ("more_name_nouns_and_shapes", True, True)):
        with name_questions(nouns, shapes):
            patched = T.collect("tune", progress=False, alpha=alpha)
        rows.append(row(name, patched, T.out_of_fold(patched)))
    rows.append(row("ablated_copies", examples, with_ablated_copies(examples, base, alpha)))
    top3 = np.array([max([c.score for c in s[:3] if c.typed] or [0.0]) for s in base.scored])
    rows.append(row("typed_top3", examples, replace(base, top_typed=top3)))
    right = np.array([int(e.answerable and bool(T.top1_is_evidence([e], [s])))
                      for e, s in zip(examples, base.scored)])
    _, p_right = T._choose_c(base.qx, right, base.q_folds, QUESTION_FEATURES)
    rows.append(row("answer_right_label", examples, replace(base, q_oof=p_right)))
    rows.append({"trial": "pairwise_ranking", "top1": pairwise_top1(examples, base)})
    rows = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    columns = ["trial", "evidence_auc", "top1", "answerable_auc", "answered", "near_topic_declined",
               "off_topic_declined"]
    print(table(rows, columns))
    path = write("answer_trials", {
        "split": "tune", "questions": len(examples), "answerable": int(base.qy.sum()), "folds": T.FOLDS,
        "note": "out of fold, folds grouped by document; decision rates with thresholds chosen on four "
                "folds and applied to the fifth", "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
