"""Retrieval quality on the dev QA set: chunk sizes x retrieval modes x fusion methods.

    python benchmarks/retrieval_quality.py

Prints recall@1/3/5/10 and MRR@10 over the answerable questions of eval/dev.jsonl
and writes benchmarks/results/retrieval_quality.json.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import ROOT, table, write  # noqa: E402

from rag.embeddings import get_embedder  # noqa: E402
from rag.evaluation import load_qa  # noqa: E402
from rag.indexing import index_folder  # noqa: E402
from rag.metrics import recall_at, reciprocal_rank  # noqa: E402
from rag.retrieval import Retriever  # noqa: E402
from rag.store import IndexStore  # noqa: E402

SIZES = [(400, 80), (600, 100), (900, 150), (1200, 200), (1600, 250)]
CONFIGS = [("dense", "rrf"), ("lexical", "rrf"), ("hybrid", "rrf"), ("hybrid", "weighted")]


def main() -> None:
    embedder = get_embedder()
    items = [i for i in load_qa(ROOT / "eval" / "dev.jsonl") if i.answerable]
    rows = []
    for size, overlap in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            index_folder(ROOT / "seeds", Path(tmp) / "index", embedder, chunk_size=size,
                         chunk_overlap=overlap, show_progress=False)
            store = IndexStore.load(Path(tmp) / "index")
        for mode, fusion in CONFIGS:
            retriever = Retriever(store, embedder, fusion=fusion)
            recalls = {k: 0.0 for k in (1, 3, 5, 10)}
            mrr = 0.0
            for item in items:
                quotes = [e["quote"] for e in item.evidence]
                texts = [h.chunk.text for h in retriever.search(item.question, 10, mode)]
                for k in recalls:
                    recalls[k] += recall_at(texts, quotes, k)
                mrr += reciprocal_rank(texts, quotes, 10)
            n = len(items)
            rows.append({"chunk_size": size, "overlap": overlap, "chunks": len(store.chunks),
                         "mode": mode if mode != "hybrid" else f"hybrid-{fusion}",
                         **{f"recall@{k}": v / n for k, v in recalls.items()}, "mrr@10": mrr / n})
    print(table(rows, ["chunk_size", "overlap", "chunks", "mode", "recall@1", "recall@3", "recall@5",
                       "recall@10", "mrr@10"]))
    print(write("retrieval_quality", {"questions": len(items), "rows": rows}))


if __name__ == "__main__":
    main()
