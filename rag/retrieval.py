"""Dense, lexical and fused retrieval over a :class:`~rag.store.Store` (FAISS or Milvus).

Fusion is a weighted sum of min-max normalised scores: ``alpha`` on dense, the
rest on BM25, with ``alpha`` chosen on the tune split of the QA collection by
``python -m rag.train`` (recall@5, then MRR; the model file records the grid).
Earlier, on the 56 answerable questions of eval/dev.jsonl with 900/150 chunks
(``python benchmarks/retrieval_quality.py``), at alpha 0.6:

    method            recall@1  recall@3  recall@5  MRR@10
    dense             0.571     0.812     0.893     0.747
    BM25              0.750     0.902     0.946     0.893
    hybrid, RRF       0.661     0.929     0.973     0.847
    hybrid, weighted  0.705     0.955     0.982     0.879

so weighted fusion is the default; RRF stays available (``fusion="rrf"``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.embeddings import Embedder
from rag.store import Store
from rag.types import Hit

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "dense", "lexical")
#: Reciprocal rank fusion's constant, the value of its original paper (Cormack, Clarke and
#: Büttcher, 2009); RRF is an option, weighted fusion (fitted ``alpha``) is what ships.
RRF_K = 60
#: The dense weight used when no fitted one is available (the dev-set measurement above).
DEFAULT_ALPHA = 0.6
#: Candidates taken from each of the dense and BM25 rankings before fusion.  On the tune split's
#: answerable questions at the fitted alpha (``python benchmarks/answer_constants.py``): recall@5
#: 0.949, 0.961, 0.961 and MRR@10 0.823, 0.830, 0.837 for 20, 50 and 100.
POOL = 50


class Retriever:
    """Ranks chunks of a store for a query; the store can be swapped atomically."""

    def __init__(self, store: Store, embedder: Embedder, fusion: str = "weighted",
                 alpha: float | None = None) -> None:
        if fusion not in FUSERS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {', '.join(sorted(FUSERS))}")
        if store.dim != embedder.dim:
            raise ValueError(f"store dim {store.dim} != embedder dim {embedder.dim}")
        self._store = store
        self.embedder = embedder
        self.fusion = fusion
        self.alpha = fitted_alpha() if alpha is None else alpha
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        return self._store

    def swap(self, store: Store) -> None:
        """Serve from ``store`` from now on; searches already running finish on the old one."""
        with self._lock:
            self._store = store

    def search(self, query: str, k: int = 5, mode: Mode | str = "hybrid") -> list[Hit]:
        """The ``k`` best chunks for ``query``, best first."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        store = self._store  # one consistent snapshot for this search
        n = store.count()
        if n == 0 or k <= 0:
            return []
        # A fixed pool (for k <= POOL // 4) keeps the ranking the same whatever k is:
        # the top 5 of a k=10 search are the k=5 results.
        pool = min(n, max(4 * k, POOL))
        dense = self._dense(store, query, pool) if mode != "lexical" else []
        lexical = store.search_lexical(query, pool) if mode != "dense" else []
        if mode == "dense":
            fused = [(r, s) for r, s in dense]
        elif mode == "lexical":
            fused = list(lexical)
        elif self.fusion == "weighted":
            fused = weighted(dense, lexical, self.alpha)
        else:
            fused = FUSERS[self.fusion](dense, lexical)
        dense_by_row = dict(dense)
        lex_by_row = dict(lexical)
        hits = []
        chunks = store.chunks_at([row for row, _ in fused[:k]])
        for rank, ((row, score), chunk) in enumerate(zip(fused[:k], chunks), start=1):
            hits.append(Hit(chunk, float(score), rank,
                            dense_by_row.get(row), lex_by_row.get(row)))
        return hits

    def _dense(self, store: Store, query: str, pool: int) -> list[tuple[int, float]]:
        return store.search_dense(np.asarray(self.embedder.embed_query(query), dtype=np.float32), pool)


def fitted_alpha() -> float:
    """The dense weight of weighted fusion fitted by ``python -m rag.train`` (0.6 before any fit)."""
    from rag.learned import ModelFileError, load_models

    try:
        return float(load_models().get("retrieval", {}).get("alpha", DEFAULT_ALPHA))
    except ModelFileError:
        return DEFAULT_ALPHA


def rrf(dense: list[tuple[int, float]], lexical: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: sum of 1 / (RRF_K + rank) over the rankings."""
    scores: dict[int, float] = {}
    for ranking in (dense, lexical):
        for rank, (row, _) in enumerate(ranking, start=1):
            scores[row] = scores.get(row, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def weighted(dense: list[tuple[int, float]], lexical: list[tuple[int, float]],
             alpha: float = DEFAULT_ALPHA) -> list[tuple[int, float]]:
    """Weighted sum of min-max normalised scores (``alpha`` on dense)."""
    def norm(pairs: list[tuple[int, float]]) -> dict[int, float]:
        if not pairs:
            return {}
        vals = [s for _, s in pairs]
        lo, hi = min(vals), max(vals)
        return {r: (s - lo) / (hi - lo) if hi > lo else 1.0 for r, s in pairs}

    d, lx = norm(dense), norm(lexical)
    rows = set(d) | set(lx)
    scores = {r: alpha * d.get(r, 0.0) + (1 - alpha) * lx.get(r, 0.0) for r in rows}
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


FUSERS: dict[str, Callable[[list[tuple[int, float]], list[tuple[int, float]]], list[tuple[int, float]]]] = {
    "rrf": rrf,
    "weighted": weighted,
}


class LangChainRetriever(BaseRetriever):
    """A LangChain ``BaseRetriever`` over a :class:`Retriever` (use ``.invoke(query)``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever
    k: int = 5
    mode: str = "hybrid"

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LCDocument]:
        return [
            LCDocument(
                page_content=hit.chunk.text,
                id=hit.chunk.id,
                metadata={
                    "chunk_id": hit.chunk.id, "source": hit.chunk.source, "title": hit.chunk.title,
                    "page": hit.chunk.page_start, "char_start": hit.chunk.char_start,
                    "char_end": hit.chunk.char_end, "score": hit.score, "rank": hit.rank,
                },
            )
            for hit in self.retriever.search(query, self.k, self.mode)
        ]
