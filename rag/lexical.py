"""BM25 keyword index (bm25s) saved as ``.npy`` arrays and JSON, never pickle."""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path

import bm25s
import Stemmer
import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'’][a-z0-9]+)*")
# Small English stop list: kept here so the index does not depend on a download.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves""".split()
)


#: Recorded in the manifest: an index tokenized differently is refused, never mixed.
TOKENIZER = "words-stop-snowball-english/1"
_STEMMER = Stemmer.Stemmer("english")


@lru_cache(maxsize=200_000)
def _stem(tok: str) -> str:
    return _STEMMER.stemWord(tok)


def tokenize(text: str) -> list[str]:
    """Lower-cased, Snowball-stemmed word tokens without stop words."""
    return [_stem(tok) for tok in _TOKEN.findall(text.lower().replace("’", "'")) if tok not in STOPWORDS]


def stem_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, stem)`` of every non-stop word token of ``text`` (as :func:`tokenize`)."""
    low = text.lower().replace("’", "'")
    return [(m.start(), m.end(), _stem(m.group())) for m in _TOKEN.finditer(low) if m.group() not in STOPWORDS]


class LexicalIndex:
    """BM25 over chunk texts; ``search`` returns ``(row, score)`` pairs, best first."""

    def __init__(self, model: bm25s.BM25, vocab: dict[str, int], size: int) -> None:
        self._model = model
        self._vocab = vocab
        self.size = size

    @classmethod
    def build(cls, texts: list[str]) -> "LexicalIndex":
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        corpus_tokens = [tokenize(t) for t in texts]
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(tok, len(vocab)) for tok in toks] for toks in corpus_tokens]
        model = bm25s.BM25()
        if texts:
            model.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        return cls(model, vocab, len(texts))

    def has_term(self, term: str) -> bool:
        """Whether the (tokenized) ``term`` occurs in any indexed chunk."""
        return term in self._vocab

    def search(self, query: str, n: int) -> list[tuple[int, float]]:
        if self.size == 0:
            return []
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not ids:
            return []
        scores = self._model.get_scores(ids)
        n = min(n, self.size)
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        scores = self._model.scores if self.size else {}
        for name in ("data", "indices", "indptr"):
            arr = np.asarray(scores.get(name, np.zeros(0)))
            np.save(folder / f"{name}.npy", arr, allow_pickle=False)
        nonocc = getattr(self._model, "nonoccurrence_array", None)
        if nonocc is not None:
            np.save(folder / "nonoccurrence.npy", np.asarray(nonocc), allow_pickle=False)
        params = {
            "k1": self._model.k1, "b": self._model.b, "delta": self._model.delta,
            "method": self._model.method, "idf_method": self._model.idf_method,
            "num_docs": self.size, "bm25s_version": bm25s.__version__,
        }
        (folder / "params.json").write_text(json.dumps(params), encoding="utf-8")
        (folder / "vocab.json").write_text(json.dumps(self._vocab), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex":
        params = json.loads((folder / "params.json").read_text(encoding="utf-8"))
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        size = int(params["num_docs"])
        model = bm25s.BM25(k1=params["k1"], b=params["b"], delta=params["delta"],
                           method=params["method"], idf_method=params["idf_method"])
        if size:
            model.scores = {
                name: np.load(folder / f"{name}.npy", allow_pickle=False)
                for name in ("data", "indices", "indptr")
            }
            model.scores["num_docs"] = size
        nonocc = folder / "nonoccurrence.npy"
        model.nonoccurrence_array = np.load(nonocc, allow_pickle=False) if nonocc.is_file() else None
        return cls(model, vocab, size)
