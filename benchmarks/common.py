"""Shared helpers of the benchmark scripts: machine info and result files."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("rag", "torch", "sentence-transformers", "faiss-cpu", "bm25s", "llama-cpp-python",
            "langchain-core", "gradio", "numpy")


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python and library versions."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def write(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/NAME.json`` with machine info and a timestamp."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table of ``rows``."""
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


#: The collection measures the benchmarks over re-read documents report.
COLLECTION_KEYS = ("questions", "recall@5", "citation_precision", "citation_recall", "abstention_rate",
                   "false_abstention_rate", "page_accuracy")


def collection_figures(split: str, corpora: list[str], cache_dir: Path | None) -> dict[str, Any]:
    """``split``'s questions of ``corpora`` answered over indexes kept in ``cache_dir`` (None: where
    ``rag eval`` keeps them): :data:`COLLECTION_KEYS`, and how many questions' evidence did not
    verify against the text (those are not scored); when most does not, a note instead."""
    from rag.collection import evaluate_collection
    from rag.evaluation import DatasetError

    try:
        summary = evaluate_collection(split, corpora=corpora, cache_dir=cache_dir)
    except DatasetError as exc:  # most evidence does not verify against this text
        return {"note": str(exc)[:120]}
    m = summary["configs"]["all"]["overall"]
    return {**{k: m[k] for k in COLLECTION_KEYS}, "unverifiable_evidence": len(summary["dataset_errors"])}
