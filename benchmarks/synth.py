"""Helpers shared by the speed benchmarks: synthetic corpora, stats, caches, subprocesses.

Synthetic corpora are made of the seeds' own sentences, shuffled into new
documents (deterministically, from a random seed), so chunk lengths, vocabulary
and sentence structure are those of the real corpus.  The 100,000-chunk corpus
is never embedded: its vectors are the real vectors of the 10k corpus, tiled and
jittered with small Gaussian noise, then re-normalised (``tiled_vectors``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from common import ROOT  # noqa: E402

SEEDS = ROOT / "seeds"
DEV = ROOT / "eval" / "dev.jsonl"
PREBUILT = ROOT / "index"
CHUNK_SIZE, CHUNK_OVERLAP = 900, 150
#: Documents of about this many chunks each.
DOC_CHUNKS = 20


# -- stats -------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50 / p95 / mean / min in milliseconds of a list of durations in seconds."""
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(pct(ms, 50), 3), "p95_ms": round(pct(ms, 95), 3),
            "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
            "min_ms": round(min(ms), 3) if ms else float("nan"), "n": len(ms)}


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def load_avg() -> list[float]:
    """1/5/15-minute load averages: the machine is shared, so every result records them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# -- questions ---------------------------------------------------------------

def dev_questions() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- synthetic corpora -------------------------------------------------------

def seed_sentences() -> list[str]:
    """Every sentence of the seed documents (via rag's own loader and sentence splitter)."""
    from rag.loaders import load_document, read_catalog
    from rag.sentences import paragraph_spans, sentence_spans

    catalog = read_catalog(SEEDS)
    out: list[str] = []
    for path in sorted(SEEDS.glob("*.txt")):
        doc = load_document(path, source=path.name, catalog=catalog)
        for p_start, p_end in paragraph_spans(doc.text):
            for s, e in sentence_spans(doc.text, p_start, p_end):
                sent = " ".join(doc.text[s:e].split())
                if len(sent.split()) >= 4:
                    out.append(sent)
    return out


def _document(rng: random.Random, sentences: list[str], n_chars: int, number: int) -> str:
    """One synthetic report: a title, headed sections of paragraphs of shuffled seed sentences."""
    parts = [f"Synthetic report {number}"]
    size = 0
    while size < n_chars:
        if rng.random() < 0.25:
            heading = " ".join(rng.choice(sentences).split()[:rng.randint(3, 7)]).rstrip(".,;:")
            parts.append(heading)
        para = " ".join(rng.choice(sentences) for _ in range(rng.randint(2, 6)))
        parts.append(para)
        size += len(para)
    return "\n\n".join(parts) + "\n"


def synthetic_texts(n_chunks: int, seed: int = 0) -> list[str]:
    """Document texts that chunk (900/150) into about ``n_chunks`` chunks in total."""
    from rag.chunking import chunk_spans

    rng = random.Random(seed)
    sentences = seed_sentences()
    texts: list[str] = []
    total = 0
    while total < n_chunks:
        want = min(DOC_CHUNKS, n_chunks - total)
        text = _document(rng, sentences, want * 760, len(texts) + 1)
        total += len(chunk_spans(text, CHUNK_SIZE, CHUNK_OVERLAP))
        texts.append(text)
    return texts


def write_corpus(folder: Path, n_chunks: int, seed: int = 0) -> Path:
    """A folder of .txt files of about ``n_chunks`` chunks."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(synthetic_texts(n_chunks, seed)):
        (folder / f"synthetic-{i:05d}.txt").write_text(text, encoding="utf-8")
    return folder


def synthetic_chunks(n_chunks: int, seed: int = 0) -> list:
    """Exactly ``n_chunks`` :class:`rag.types.Chunk` objects cut by rag's chunker (no files)."""
    from rag.chunking import chunk_spans
    from rag.types import Chunk

    chunks = []
    for d, text in enumerate(synthetic_texts(n_chunks, seed)):
        doc_id = hashlib.sha256(text.encode()).hexdigest()[:16]
        for i, (s, e) in enumerate(chunk_spans(text, CHUNK_SIZE, CHUNK_OVERLAP)):
            chunks.append(Chunk(f"{doc_id}-{i:04d}", doc_id, f"synthetic-{d:05d}.txt",
                                f"Synthetic report {d + 1}", text[s:e], s, e, 1, 1))
    return chunks[:n_chunks]


def tiled_vectors(real: np.ndarray, n: int, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: ``real`` tiled, each copy jittered (N(0, noise) per dim), re-normalised."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(real))
    out = np.tile(real.astype(np.float32), (reps, 1))[:n]
    for i in range(0, n, 10_000):  # float32 noise in blocks: no n x dim float64 temporary
        block = out[i:i + 10_000]
        block += noise * rng.standard_normal(size=block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return np.ascontiguousarray(out, dtype=np.float32)


# -- a cache shared by the scripts of one run ----------------------------------

def cache_dir() -> Path:
    """``$RAG_BENCH_CACHE`` (set by run_all.py for one run), else a temp folder for this process."""
    env = os.environ.get("RAG_BENCH_CACHE")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    global _TMP_CACHE
    if _TMP_CACHE is None:
        _TMP_CACHE = Path(tempfile.mkdtemp(prefix="rag-bench-"))
        import atexit
        atexit.register(shutil.rmtree, _TMP_CACHE, True)
    return _TMP_CACHE


_TMP_CACHE: Path | None = None


def synthetic_index(n_chunks: int, embedder=None) -> Path:  # noqa: ANN001
    """An index folder of the ``n_chunks`` synthetic corpus: from the cache, else built now."""
    target = cache_dir() / f"index-{n_chunks}"
    if (target / "manifest.json").is_file():
        return target
    from rag.embeddings import get_embedder
    from rag.indexing import index_folder

    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "corpus", n_chunks)
        print(f"  (building the {n_chunks}-chunk index for this run: not cached)", flush=True)
        index_folder(corpus, target, embedder or get_embedder(), chunk_size=CHUNK_SIZE,
                     chunk_overlap=CHUNK_OVERLAP, show_progress=False)
    return target


def index_vectors(index_dir: Path) -> np.ndarray:
    """All vectors of an index folder, in row order."""
    import faiss

    index = faiss.read_index(str(index_dir / "vectors.faiss"))
    return index.reconstruct_n(0, index.ntotal)


# -- subprocesses ------------------------------------------------------------

def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_child(args: list[str], timeout: float = 1800, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python ARGS`` and parse the last line of its stdout as JSON.

    Children report their own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss`` at their
    end): ``RUSAGE_CHILDREN`` in this process would be the maximum over *all* children
    so far, so a small size run after a large one would inherit the large one's peak.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(ROOT / "benchmarks"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([python(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=str(ROOT), env=full_env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"child {args} timed out after {timeout}s; stderr tail: {err[-2000:]}")
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}); stderr tail:\n{err[-3000:]}")
    lines = [line for line in out.splitlines() if line.strip()]
    result = json.loads(lines[-1])
    result.setdefault("child_wall_s", round(wall, 3))
    return result


def self_peak_rss_mb() -> float:
    """This process's peak RSS so far, in MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_quick() -> bool:
    return "--quick" in sys.argv or os.environ.get("RAG_BENCH_QUICK") == "1"


def result_name(name: str) -> str:
    """Quick runs write NAME-quick.json so they never overwrite a full run's results."""
    return f"{name}-quick" if is_quick() else name
