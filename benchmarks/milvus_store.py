"""Retrieval latency of the Milvus store (milvus-lite, embedded) against the FAISS index, same run.

    python benchmarks/milvus_store.py [--quick]

100,000 synthetic chunks (20,000 with --quick; rag's chunker over texts made of seed
sentences, as benchmarks/retrieval.py) with pre-computed vectors (the real vectors of the
1k-chunk synthetic index, tiled with N(0, 0.02) noise) are written once into a FAISS
:class:`~rag.store.IndexStore` (HNSW above ``HNSW_THRESHOLD``, and flat for comparison) and
once into a milvus-lite :class:`~rag.milvus_store.MilvusStore` (FLAT dense index, BM25
function).  Then ``Retriever.search(question, k=5, mode)`` over the 72 questions of
eval/dev.jsonl, dense, BM25 and hybrid, the variants back to back on each question in an
order rotated question by question; query vectors are cached first (warm), so the figures
compare the engines, not the embedder.  Also the write time and the share of the top 5
that the Milvus store and FAISS flat have in common.  Writes
benchmarks/results/milvus_store.json (milvus_store-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write  # noqa: E402
from retrieval import interleaved  # noqa: E402
from synth import (  # noqa: E402
    dev_questions, index_vectors, is_quick, load_avg, result_name, summary_ms, synthetic_chunks, synthetic_index,
    tiled_vectors,
)

K = 5


def main() -> None:
    argparse.ArgumentParser().add_argument("--quick", action="store_true")
    quick = is_quick()
    from rag.embeddings import get_embedder
    from rag.milvus_store import MilvusStore
    from rag.retrieval import Retriever
    from rag.store import IndexStore, make_faiss_index

    n = 20_000 if quick else 100_000
    embedder = get_embedder()
    questions = [q["question"] for q in dev_questions()]
    real = index_vectors(synthetic_index(1000, embedder))
    chunks = synthetic_chunks(n)
    vectors = tiled_vectors(real, len(chunks))
    files: dict[str, dict] = {}
    for c in chunks:
        files.setdefault(c.source, {"hash": c.doc_id, "chunk_ids": []})["chunk_ids"].append(c.id)
    manifest = {"format_version": 2, "embedder": {"model_id": embedder.model_id, "dim": embedder.dim},
                "chunking": {"chunk_size": 900, "chunk_overlap": 150}, "files": files}

    t0 = time.perf_counter()
    faiss_store = IndexStore.build(chunks, vectors, manifest)
    faiss_build_s = time.perf_counter() - t0
    flat = IndexStore(chunks, make_faiss_index(vectors, embedder.dim, "flat"), faiss_store.lexical,
                      dict(faiss_store.manifest, index_type="flat"))
    with tempfile.TemporaryDirectory() as tmp:
        print(f"writing {len(chunks)} chunks into milvus-lite ...", flush=True)
        milvus = MilvusStore(str(Path(tmp) / "milvus.db"), "bench")
        t0 = time.perf_counter()
        milvus.write(chunks, vectors, manifest, [], vectors[:0])
        milvus_write_s = time.perf_counter() - t0
        retrievers = {"faiss": Retriever(faiss_store, embedder), "faiss-flat": Retriever(flat, embedder),
                      "milvus": Retriever(milvus, embedder)}
        for q in questions:
            embedder.embed_query(q)  # warm: every query vector a cache hit below
        variants = {f"{name}/{mode}": ((lambda q, r=r, m=mode: r.search(q, K, m)), False)
                    for name, r in retrievers.items() for mode in ("dense", "lexical", "hybrid")}
        for fn, _ in variants.values():
            fn(questions[0])
        times = interleaved(variants, questions, 1)
        shared = [len({h.chunk.id for h in retrievers["milvus"].search(q, K)}
                      & {h.chunk.id for h in retrievers["faiss-flat"].search(q, K)}) / K for q in questions]
    rows = {name: summary_ms(t) for name, t in times.items()}
    ratios = {mode: round(rows[f"milvus/{mode}"]["p50_ms"] / rows[f"faiss/{mode}"]["p50_ms"], 2)
              for mode in ("dense", "lexical", "hybrid")}
    path = write(result_name("milvus_store"), {
        "command": "python benchmarks/milvus_store.py" + (" --quick" if quick else ""),
        "chunks": len(chunks), "questions": len(questions), "k": K, "query_vectors": "cached (warm)",
        "faiss_index_type": faiss_store.manifest["index_type"],
        "faiss_build_s": round(faiss_build_s, 1), "milvus_write_s": round(milvus_write_s, 1),
        "latency": rows, "milvus_vs_faiss_p50": ratios,
        "top5_shared_with_faiss_flat": round(sum(shared) / len(shared), 3),
        "load_avg": load_avg(),
    })
    for name, r in rows.items():
        print(f"{name:20s} p50 {r['p50_ms']:8.2f} ms  p95 {r['p95_ms']:8.2f} ms")
    print(f"milvus / faiss p50: {ratios}; write {milvus_write_s:.1f}s (faiss build {faiss_build_s:.1f}s)")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
