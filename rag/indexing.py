"""Build or update an index from a folder of documents.

Unchanged files (same content hash) keep their chunks and vectors; changed files
are re-chunked and re-embedded; removed files are dropped; unreadable files are
skipped with the reason, or fail the run with ``strict=True``.

The manifest records how the chunks were cut: the chunk settings and a
fingerprint of the code that reads and cuts documents (:func:`text_pipeline_id`).
When either differs, every file is re-chunked; a chunk whose text the old index
already holds keeps its vector, so only text that is really new is embedded.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from rag.chunking import chunk_document
from rag.embeddings import Embedder
from rag.errors import IndexMismatchError, IndexNotFoundError, LoaderError, RagError
from rag.loaders import CATALOG_NAME, content_hash, is_supported, load_document, read_catalog, split_suffix
from rag.store import (DEFAULT_COLLECTION, FORMAT_VERSION, STORE_FILE, IndexStore, SentenceVectors, Store,
                       StoreTarget, load_store, recorded_target, sentence_texts, write_target)
from rag.types import Chunk

log = logging.getLogger(__name__)

#: The modules that turn a file into chunks.  Their source, with the chunk settings, is the
#: index's record of how its chunks were cut; the file hashes alone cannot tell that an index
#: was cut by older code.
TEXT_PIPELINE = ("loaders", "cleaning", "sentences", "chunking")


def code_fingerprint(source: str) -> str:
    """What a module's source does, without its comments, docstrings and layout: a change
    that only documents the code leaves it unchanged (and so leaves indexes current)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


@functools.cache
def text_pipeline_id() -> str:
    """A fingerprint of the code that reads documents and cuts them into chunks (read once: the
    code a process runs is the code it imported)."""
    digest = hashlib.sha256()
    for name in TEXT_PIPELINE:
        source = (Path(__file__).parent / f"{name}.py").read_text(encoding="utf-8")
        digest.update(code_fingerprint(source).encode("utf-8"))
    return digest.hexdigest()[:16]


#: Why an index cut by other code is stale (and every file is re-chunked).
PIPELINE_CHANGED = "the index was cut into chunks by another version of the document reader"


def chunking_record(chunk_size: int, chunk_overlap: int) -> dict[str, Any]:
    """The manifest's ``chunking`` entry for these settings and this code."""
    return {"chunk_size": chunk_size, "chunk_overlap": chunk_overlap, "pipeline": text_pipeline_id()}


class IndexingError(RagError):
    """Indexing stopped: a strict run met a bad file, or the folder holds nothing to index."""


@dataclass
class IndexReport:
    """What an indexing run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    embedded: int = 0
    sentences_embedded: int = 0
    seconds: float = 0.0
    rebuilt_reason: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        lines = [
            f"files: {len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped",
            f"chunks: {self.chunks} in the index, {self.embedded} embedded "
            f"(and {self.sentences_embedded} new sentences) in {self.seconds:.1f}s",
        ]
        lines += [f"skipped {name}: {reason}" for name, reason in sorted(self.skipped.items())]
        return "\n".join(lines)


def progress_enabled(flag: bool | None = None) -> bool:
    """Progress bars are on unless turned off by flag or ``RAG_SHOW_PROGRESS=0``."""
    if flag is not None:
        return flag
    return os.environ.get("RAG_SHOW_PROGRESS", "1").lower() not in ("0", "false", "no", "off")


def list_files(folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Supported files under ``folder`` by relative name, and skipped names with reasons.

    Hidden files and folders are ignored; symlinked folders are not followed
    (so a symlink loop cannot trap the walk).
    """
    if not folder.is_dir():
        raise IndexingError(f"{folder} is not a folder; give the folder of documents to index")
    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name == CATALOG_NAME:
                continue
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if not is_supported(path):
                skipped[rel] = f"unsupported file type '{split_suffix(name)[1] or '(none)'}'"
            elif path.is_symlink() and not path.exists():
                skipped[rel] = "broken symbolic link"
            elif not path.is_file():
                skipped[rel] = "not a regular file (a pipe, socket or device)"
            else:
                files[rel] = path
    return files, skipped


def corpus_hashes(folder: Path) -> dict[str, str]:
    """Content hash of every supported file under ``folder``."""
    files, _ = list_files(folder)
    out = {}
    for rel, path in files.items():
        try:
            out[rel] = content_hash(path.read_bytes())
        except OSError:
            continue
    return out


#: Most bytes of changed files read ahead of parsing (one batch for the workers).
PARSE_BATCH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ParseJob:
    """One file to read into chunks: its name in the index, its bytes and its folder's catalog."""

    rel: str
    data: bytes
    catalog: dict[str, dict[str, str]]


def parse_file(job: ParseJob, chunk_size: int, chunk_overlap: int) -> dict[str, Any]:
    """``job``'s file loaded and chunked: ``{"entry": manifest entry, "chunks": [chunk dicts]}``,
    or ``{"error": why it is skipped}``.  Plain data, so it can come back from another process."""
    try:
        doc = load_document(Path(job.rel), source=job.rel, catalog=job.catalog, data=job.data)
    except LoaderError as exc:
        return {"error": exc.reason}
    chunks = chunk_document(doc, chunk_size, chunk_overlap)
    return {
        "entry": {
            "hash": doc.content_hash, "doc_id": doc.id, "title": doc.title, "pages": len(doc.pages),
            "chars": len(doc.text), "chunk_ids": [c.id for c in chunks], "metadata": doc.metadata,
            "page_spans": [[p.page, p.start, p.end] for p in doc.pages],
        },
        "chunks": [c.to_dict() for c in chunks],
    }


class Workers(Protocol):
    """Where an index build parses files and embeds texts: this process by default, or a
    cluster (:class:`rag.ray_indexing.RayWorkers`).  A new engine is one class."""

    def parse(self, jobs: list[ParseJob], chunk_size: int, chunk_overlap: int,
              progress: bool) -> list[dict[str, Any]]:
        """:func:`parse_file` of every job, in the jobs' order."""
        ...

    def embed(self, texts: list[str], progress: bool) -> np.ndarray:
        """Vectors of ``texts`` (rows in order), as the index's embedder makes them."""
        ...


class LocalWorkers:
    """Parse and embed in this process."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def parse(self, jobs: list[ParseJob], chunk_size: int, chunk_overlap: int,
              progress: bool) -> list[dict[str, Any]]:
        return [parse_file(job, chunk_size, chunk_overlap)
                for job in tqdm(jobs, desc="parsing", unit="file", disable=not progress or not jobs)]

    def embed(self, texts: list[str], progress: bool) -> np.ndarray:
        return self.embedder.embed_documents(texts, show_progress=progress)  # type: ignore[call-arg]


def index_folder(
    folder: str | Path,
    index_dir: str | Path,
    embedder: Embedder,
    *,
    chunk_size: int = 900,
    chunk_overlap: int = 150,
    strict: bool = False,
    show_progress: bool | None = None,
    rebuild: bool = False,
    workers: Workers | None = None,
    store: StoreTarget | None = None,
) -> IndexReport:
    """Build or update the index at ``index_dir`` from the documents in ``folder``.

    ``workers`` parse the changed files and embed the new texts (default: this process);
    everything else, and the atomic write, happens here.  ``store`` says which engine holds
    the index (default: the one it is in already, else FAISS files in ``index_dir``).
    """
    workers = workers or LocalWorkers(embedder)
    t0 = time.perf_counter()
    folder, index_dir = Path(folder), Path(index_dir)
    progress = progress_enabled(show_progress)
    report = IndexReport()
    files, report.skipped = list_files(folder)

    chunking = chunking_record(chunk_size, chunk_overlap)
    recorded = recorded_target(index_dir)
    target = store or recorded or StoreTarget()
    same = recorded is not None and recorded.backend == target.backend and (
        target.backend == "faiss" or store is None or store.uri is None
        or target.resolved_uri(index_dir) == recorded.resolved_uri(index_dir))
    if recorded is not None and not same and not rebuild:
        where = recorded.backend if recorded.backend == "faiss" else f"the Milvus store at {recorded.uri}"
        raise IndexingError(f"the index at {index_dir} is kept in {where}; add --rebuild to move it, "
                            "or choose another --index-dir")
    if same:
        target = recorded  # type: ignore[assignment] - same engine: keep its collection
    old, report.rebuilt_reason = (None, "rebuild requested") if rebuild else _reusable(
        index_dir, embedder, chunking, target if same else None
    )
    old_files: dict[str, Any] = old.manifest.get("files", {}) if old else {}

    kept: list[tuple[list[Chunk], np.ndarray]] = []
    fresh: list[Chunk] = []
    file_entries: dict[str, Any] = {}
    seen_hashes: dict[str, str] = {}
    skipped_hashes: dict[str, dict[str, str]] = {}
    catalogs: dict[Path, dict[str, dict[str, str]]] = {}

    # Changed files are parsed in batches, so no more than about PARSE_BATCH_BYTES of them
    # are held in memory at once; each is parsed from the very bytes that were hashed.
    pending: list[tuple[ParseJob, str]] = []
    parsed: list[tuple[str, str, dict[str, Any]]] = []  # name, content hash, parse_file's result

    queued = 0  # bytes in ``pending``

    def flush() -> None:
        nonlocal queued
        jobs = [job for job, _ in pending]
        parsed.extend((job.rel, digest, out) for (job, digest), out in
                      zip(pending, workers.parse(jobs, chunk_size, chunk_overlap, progress)))
        pending.clear()
        queued = 0

    for rel, path in tqdm(files.items(), desc="reading", unit="file", disable=not progress):
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.skipped[rel] = f"cannot be read ({exc.strerror or exc})"
            continue
        digest = content_hash(data)
        if digest in seen_hashes:
            report.skipped[rel] = f"same content as {seen_hashes[digest]}"
            skipped_hashes[rel] = {"hash": digest, "reason": report.skipped[rel]}
            continue
        seen_hashes[digest] = rel
        prev = old_files.get(rel)
        if old is not None and not report.rebuilt_reason and prev and prev.get("hash") == digest:
            found = old.file_chunks(list(prev["chunk_ids"]))
            if found is not None:
                kept.append(found)
                file_entries[rel] = prev
                report.unchanged.append(rel)
                continue
        catalog = catalogs.setdefault(path.parent, read_catalog(path.parent))
        # The file's catalog entry under its own name (the loader looks it up by file name).
        pending.append((ParseJob(rel, data, {path.name: catalog[path.name]} if path.name in catalog else {}), digest))
        queued += len(data)
        if queued >= PARSE_BATCH_BYTES:
            flush()
    flush()
    for rel, digest, out in parsed:
        if "error" in out:
            report.skipped[rel] = out["error"]
            skipped_hashes[rel] = {"hash": digest, "reason": out["error"]}
            continue
        fresh.extend(Chunk.from_dict(c) for c in out["chunks"])
        file_entries[rel] = out["entry"]
        (report.updated if rel in old_files else report.added).append(rel)
    report.removed = sorted(set(old_files) - set(file_entries) - set(report.skipped))

    if strict and report.skipped:
        raise IndexingError(
            "strict mode: skipped " + "; ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items()))
            + " (fix or remove these files, or run without --strict)"
        )
    if not file_entries:
        raise IndexingError(
            f"no readable documents in {folder} (supported: .docx, .htm, .html, .md, .markdown, .pdf, .txt)"
            + ("; skipped: " + "; ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items())) if report.skipped else "")
        )

    vectors_new = np.zeros((len(fresh), embedder.dim), dtype=np.float32)
    # Vectors the old index holds, by chunk text: reused for re-cut chunks whose text is unchanged.
    old_vectors = old.vectors_of_texts([c.text for c in fresh]) if old is not None else {}
    for n, c in enumerate(fresh):
        if c.text in old_vectors:
            vectors_new[n] = old_vectors[c.text]
    todo = [n for n, c in enumerate(fresh) if c.text not in old_vectors]
    chunks = [c for part, _ in kept for c in part] + fresh
    manifest = {
        "format_version": FORMAT_VERSION,
        # Relative to the index, so a committed or moved index still finds its documents.
        "source_dir": os.path.relpath(Path(folder).resolve(), Path(index_dir).resolve()),
        "embedder": {"model_id": embedder.model_id, "dim": embedder.dim},
        "chunking": chunking,
        "files": dict(sorted(file_entries.items())),
        "skipped": dict(sorted(skipped_hashes.items())),
        "counts": {"documents": len(file_entries), "chunks": len(chunks)},
    }
    save = (old is None or report.changed or recorded != target or old.manifest.get("skipped", {}) != manifest["skipped"]
            or old.manifest.get("source_dir") != manifest["source_dir"])
    sentence_list, sentence_vectors, sentence_todo = (_sentence_plan(chunks, old, embedder.dim) if save
                                                      else ([], np.zeros((0, embedder.dim), np.float32), []))
    # New chunk and sentence texts in one call, so a pool of workers starts once per build.
    texts = [fresh[n].text for n in todo] + [sentence_list[n] for n in sentence_todo]
    if texts:
        embedded = workers.embed(texts, progress)
        vectors_new[todo] = embedded[:len(todo)]
        sentence_vectors[sentence_todo] = embedded[len(todo):]
    report.embedded, report.sentences_embedded = len(todo), len(sentence_todo)
    vectors = np.vstack([v for _, v in kept] + [vectors_new]) if chunks else vectors_new
    if save and target.backend == "milvus":
        _write_milvus(index_dir, target, old, report.rebuilt_reason, chunks, vectors, manifest,
                      sentence_list, sentence_vectors, sentence_todo, progress)
    elif save:
        sentences = SentenceVectors.from_texts(sentence_list, sentence_vectors)
        IndexStore.build(chunks, vectors, manifest, sentences).save(index_dir)
        (index_dir / STORE_FILE).unlink(missing_ok=True)
    report.chunks = len(chunks)
    report.seconds = time.perf_counter() - t0
    return report


def _write_milvus(index_dir: Path, target: StoreTarget, old: Store | None, rebuilt_reason: str,
                  chunks: list[Chunk], vectors: np.ndarray, manifest: dict[str, Any], sentence_list: list[str],
                  sentence_vectors: np.ndarray, sentence_todo: list[int], progress: bool) -> None:
    """Update the Milvus collection in place, or (a new index, or a rebuild) write a new
    collection and switch ``store.json`` to it once it is complete, then drop the old one.
    In place, only the sentences the old index lacked (``sentence_todo``) are written."""
    from rag.milvus_store import MilvusStore

    uri = target.resolved_uri(index_dir)
    manifest = dict(manifest, counts={**manifest["counts"], "sentences": len(sentence_list)})
    if old is not None and not rebuilt_reason:
        MilvusStore(uri, target.collection, index_dir).write(
            chunks, vectors, manifest, [sentence_list[n] for n in sentence_todo], sentence_vectors[sentence_todo],
            progress)
        write_target(index_dir, target)
        return
    fresh = StoreTarget("milvus", target.uri, f"{DEFAULT_COLLECTION}_{uuid.uuid4().hex[:8]}")
    MilvusStore(uri, fresh.collection, index_dir).write(chunks, vectors, manifest, sentence_list, sentence_vectors,
                                                        progress)
    previous = recorded_target(index_dir)
    write_target(index_dir, fresh)
    if previous is not None and previous.backend == "milvus" and previous.resolved_uri(index_dir) == uri \
            and previous.collection != fresh.collection:
        MilvusStore(uri, previous.collection, index_dir).drop()


def _sentence_plan(chunks: list[Chunk], old: Store | None, dim: int) -> tuple[list[str], np.ndarray, list[int]]:
    """The distinct sentences of ``chunks``, their vectors where the old index has them
    (zeros elsewhere), and the positions of those still to embed."""
    texts = sentence_texts(chunks)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    todo = []
    stored = old.sentences if old is not None else None
    found = stored.get_many(texts) if stored is not None else [None] * len(texts)
    for n, (text, vector) in enumerate(zip(texts, found)):
        if vector is None:
            todo.append(n)
        else:
            out[n] = vector
    return texts, out, todo


def _reusable(index_dir: Path, embedder: Embedder, chunking: dict[str, Any],
              target: StoreTarget | None) -> tuple[Store | None, str]:
    """The old index in ``target`` if its vectors can be reused (else None), and why every file
    is re-chunked (empty when files with unchanged content keep their chunks)."""
    if target is None:
        return None, ""
    try:
        old = load_store(index_dir, target, model_id=embedder.model_id, dim=embedder.dim)
    except IndexNotFoundError:
        return None, ""
    except IndexMismatchError as exc:
        return None, str(exc).split(";")[0]
    return old, _chunking_change(old.manifest.get("chunking", {}), chunking)


def _chunking_change(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    """Why chunks cut as ``recorded`` differ from chunks cut as ``current``, or ''."""
    settings = ("chunk_size", "chunk_overlap")
    if any(recorded.get(k) != current[k] for k in settings):
        return f"chunking changed from {({k: recorded.get(k) for k in settings})}"
    return PIPELINE_CHANGED if recorded.get("pipeline") != current["pipeline"] else ""


def stale_reason(folder: Path, index_dir: Path, embedder: Embedder, *,
                 chunk_size: int | None = None, chunk_overlap: int | None = None) -> str | None:
    """Why the index at ``index_dir`` does not match ``folder``, ``embedder``, this version's
    text pipeline and (when given) the chunk settings, or None."""
    from rag.store import check_manifest, read_manifest

    try:
        manifest = read_manifest(index_dir)
        check_manifest(manifest, index_dir, model_id=embedder.model_id, dim=embedder.dim)
    except (IndexNotFoundError, IndexMismatchError) as exc:
        return str(exc).split(";")[0]
    recorded = manifest.get("chunking", {})
    wanted = chunking_record(recorded.get("chunk_size") if chunk_size is None else chunk_size,
                             recorded.get("chunk_overlap") if chunk_overlap is None else chunk_overlap)
    if change := _chunking_change(recorded, wanted):
        return change
    indexed = {k: v.get("hash") for k, v in manifest.get("files", {}).items()}
    indexed.update({k: v.get("hash") for k, v in manifest.get("skipped", {}).items()})
    current = corpus_hashes(folder)
    if indexed != current:
        changed = sorted(set(indexed.items()) ^ set(current.items()))
        names = sorted({name for name, _ in changed})
        return f"the documents in {folder} changed since the index was built ({', '.join(names[:5])})"
    return None
