"""The multi-domain QA collection (``eval/collection.json``): corpora, genres, tune/test split.

Each corpus is a folder of real documents with a QA file about it.  Every document
is in the ``tune`` or the ``test`` split, and a question belongs to the split of
the document it is about, so nothing fitted on ``tune`` has seen a ``test``
document.  ``python -m rag.collection --split test`` evaluates the shipped
pipeline on one split, per genre, with the metrics of :mod:`rag.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import PROJECT_ROOT, Settings
from rag.evaluation import (
    DatasetError,
    QAItem,
    check_evidence,
    evidence_page_map,
    load_qa,
    run_one,
    summarise,
    write_outputs,
)

COLLECTION = PROJECT_ROOT / "eval" / "collection.json"
SPLITS = ("tune", "test")


@dataclass(frozen=True)
class Corpus:
    """One corpus of the collection."""

    name: str
    folder: Path
    qa: Path
    genre: str
    split: dict[str, str]   # document file name -> "tune" | "test"

    def split_of(self, item: QAItem) -> str:
        """The split of the document ``item`` is about (every document it names must agree)."""
        # A question that names no document (the seeds' unanswerable ones) is in the
        # corpus's only split; a corpus with both splits must name it.
        splits = {self.split.get(d) for d in item.docs} if item.docs else set(self.split.values())
        if len(splits) != 1 or None in splits:
            raise DatasetError(f"{self.qa}: {item.id} names documents {item.docs} that are not in one split")
        return splits.pop()  # type: ignore[return-value]

    def items(self, split: str | None = None) -> list[QAItem]:
        """The corpus's questions, or those of one split."""
        return [i for i in load_qa(self.qa) if split is None or self.split_of(i) == split]


def is_collection(path: Path) -> bool:
    """Whether ``path`` is a collection file (JSON with ``corpora``) rather than a QA set."""
    if Path(path).suffix.lower() != ".json":
        return False
    try:
        return "corpora" in json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def load_collection(path: Path = COLLECTION) -> list[Corpus]:
    """The corpora of a collection file (folder and QA paths relative to the file's folder's parent)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    root = Path(path).resolve().parent.parent
    out = []
    for name, c in data["corpora"].items():
        bad = {v for v in c["split"].values()} - set(SPLITS)
        if bad:
            raise DatasetError(f"{path}: corpus {name} has unknown split names {sorted(bad)}")
        out.append(Corpus(name, root / c["folder"], root / c["qa"], c["genre"], dict(c["split"])))
    return out


def corpus_index(corpus: Corpus, settings: Settings, embedder: Any, cache_dir: Path | None = None) -> Path:
    """The index of ``corpus`` under the cache folder, built or refreshed when stale (other
    documents, embedder, tokenizer or text pipeline: see :func:`rag.indexing.stale_reason`)."""
    from rag.indexing import index_folder, stale_reason

    index_dir = (cache_dir or settings.paths.cache_dir / "collection") / corpus.name
    if stale_reason(corpus.folder, index_dir, embedder, chunk_size=settings.chunking.chunk_size,
                    chunk_overlap=settings.chunking.chunk_overlap):
        index_folder(corpus.folder, index_dir, embedder, chunk_size=settings.chunking.chunk_size,
                     chunk_overlap=settings.chunking.chunk_overlap, show_progress=False)
    return index_dir


def evaluate_collection(
    split: str,
    *,
    backend: str = "extractive",
    out_dir: Path | None = None,
    collection: Path = COLLECTION,
    cache_dir: Path | None = None,
    corpora: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one split's questions through the assistant, corpus by corpus, and score them
    overall, per genre and per corpus."""
    from rag.assistant import Assistant
    from rag.embeddings import embedder_for

    settings = Settings()
    embedder = embedder_for(settings.embedding)
    rows: list[dict[str, Any]] = []
    items: list[QAItem] = []
    genre_of: dict[str, str] = {}
    errors: list[dict[str, str]] = []
    for corpus in load_collection(collection):
        if corpora and corpus.name not in corpora:
            continue
        chosen = corpus.items(split)
        if not chosen:
            continue
        assistant = Assistant(corpus_index(corpus, settings, embedder, cache_dir), backend,
                              embedder=embedder, settings=settings)
        bad = check_evidence(chosen, corpus.folder)
        errors += bad
        chosen = [i for i in chosen if i.id not in {e["id"] for e in bad}]
        pages = evidence_page_map(chosen, corpus.folder)
        for n, item in enumerate(chosen, start=1):
            if progress:
                progress(f"{corpus.name} {n}/{len(chosen)}")
            row = run_one(assistant, item, backend, settings.retrieval.k, pages.get(item.id))
            rows.append(row)
            genre_of[item.id] = corpus.genre
        items += chosen
    if not rows:
        raise DatasetError(f"no question in split {split!r}")
    by_genre = [dict(r, config=genre_of[r["id"]]) for r in rows]
    summary = {
        "split": split,
        "backend": backend,
        "qa_file": f"{collection.name} ({split} split)",
        "k": Settings().retrieval.k,
        "configs": {"all": summarise(rows, items)[backend], **summarise(by_genre, items)},
        "dataset_errors": errors,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), rows, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.collection", description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--backend", default="extractive")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.jsonl, summary.json, report.md")
    parser.add_argument("--corpus", action="append", help="only this corpus (repeatable)")
    args = parser.parse_args(argv)
    summary = evaluate_collection(args.split, backend=args.backend, out_dir=args.out, corpora=args.corpus,
                                  progress=lambda m: print(m, file=sys.stderr, end="\r"))
    print(file=sys.stderr)
    keys = ("questions", "recall@5", "citation_precision", "citation_recall", "abstention_rate",
            "false_abstention_rate", "page_accuracy")
    print("| genre | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, cfg in summary["configs"].items():
        m = cfg["overall"]
        print(f"| {name} | " + " | ".join("n/a" if m[k] is None else (f"{m[k]:.3f}" if isinstance(m[k], float)
                                                                         else str(m[k])) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
