"""The on-disk index: FAISS's own file, a JSONL chunk table, BM25 arrays, a manifest.

Layout of an index folder::

    manifest.json   format version, embedder id and dim, chunking, files, counts
    vectors.faiss   faiss.write_index of the dense index (inner product on unit vectors)
    chunks.jsonl    one Chunk per line, in FAISS row order
    bm25/           LexicalIndex arrays (.npy, allow_pickle=False) and JSON
    sentences/      the vector of every sentence of the chunks (keys.npy, vectors.npy),
                    so answering never embeds document text at question time

An index kept in Milvus instead (:mod:`rag.milvus_store`) leaves only ``store.json`` in the
folder, naming the engine and collection (and, for milvus-lite, its database file);
:func:`open_store` reads either kind through the :class:`Store` protocol.

Saving is atomic: everything is written and fsynced into a sibling temp folder,
which then replaces the old one by rename.  A crash at any point leaves the old
index (or, in the instant between the two renames, its ``.old`` copy, which
:func:`recover` puts back) loadable.  Nothing here is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import faiss
import numpy as np

from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.lexical import TOKENIZER, LexicalIndex
from rag.sentences import chunk_sentences
from rag.types import Chunk

log = logging.getLogger(__name__)

#: 2: sentence vectors stored beside the chunk vectors.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
#: Above this many vectors an HNSW graph replaces exact search: exact search of 50,000 chunks
#: takes 19 ms p50, of 100,000 30 ms (benchmarks/results/retrieval.json, "hnsw_vs_flat").
HNSW_THRESHOLD = 50_000
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 80
#: Candidates an HNSW search visits.  Against exact search (benchmarks/results/retrieval.json,
#: MiniLM vectors of 10k/50k/100k chunks, graphs built with M 32 and efConstruction 80):
#: recall@10 0.968/0.942/0.908 at 64 and 0.982/0.988/0.978 at 128, searched in 0.13 ms and
#: 0.24 ms p50 at 100k chunks, both far under the 50 ms budget.
HNSW_EF_SEARCH = 128


def rebuild_hint(index_dir: Path) -> str:
    return f"rebuild it with: rag index FOLDER --index-dir {index_dir}"


def make_faiss_index(vectors: np.ndarray, dim: int, kind: str | None = None) -> faiss.Index:
    """An inner-product FAISS index over ``vectors``: flat when small, HNSW when large."""
    kind = kind or ("hnsw" if len(vectors) > HNSW_THRESHOLD else "flat")
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        raise ValueError(f"unknown index kind {kind!r}; use 'flat' or 'hnsw'")
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class SentenceVectors:
    """The vector of every sentence of an index's chunks, looked up by the sentence's text.

    Keys are 64-bit BLAKE2b digests of the text (a collision among a million sentences
    has odds of about 1 in 10^7); vectors are kept as float16, which moves a cosine by
    less than 1e-4 and halves the file.
    """

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} sentence keys but {len(vectors)} vectors")
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.vectors = np.asarray(vectors, dtype=np.float16)
        self._row = {k: i for i, k in enumerate(self.keys.tolist())}

    @staticmethod
    def key(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")

    @classmethod
    def empty(cls, dim: int) -> "SentenceVectors":
        return cls(np.zeros(0, dtype=np.uint64), np.zeros((0, dim), dtype=np.float16))

    @classmethod
    def from_texts(cls, texts: list[str], vectors: np.ndarray) -> "SentenceVectors":
        return cls(np.array([cls.key(t) for t in texts], dtype=np.uint64), vectors)

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, text: str) -> np.ndarray | None:
        """The stored vector of ``text`` (float32), or None."""
        row = self._row.get(self.key(text))
        return None if row is None else self.vectors[row].astype(np.float32)

    def get_many(self, texts: list[str]) -> list[np.ndarray | None]:
        return [self.get(t) for t in texts]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "keys.npy", self.keys, allow_pickle=False)
        np.save(folder / "vectors.npy", self.vectors, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> "SentenceVectors":
        return cls(np.load(folder / "keys.npy", allow_pickle=False),
                   np.load(folder / "vectors.npy", allow_pickle=False))


class SentenceLookup(Protocol):
    """Stored sentence vectors, looked up by the sentence's text."""

    def get_many(self, texts: list[str]) -> list[np.ndarray | None]:
        """The stored vector (float32) of each text, or None where there is none."""
        ...


@runtime_checkable
class Store(Protocol):
    """What retrieval and answering need of an index, whatever engine holds it.

    Rows are integers the store gives its chunks; a row found by one search names the
    same chunk in :meth:`chunks_at` until the store is reloaded.  Implementations:
    :class:`IndexStore` (FAISS and BM25 files in a folder, the default) and
    :class:`rag.milvus_store.MilvusStore` (a Milvus collection, embedded or a server).
    """

    manifest: dict[str, Any]

    @property
    def dim(self) -> int: ...

    @property
    def sentences(self) -> SentenceLookup | None: ...

    def count(self) -> int:
        """How many chunks a search can return."""
        ...

    def search_dense(self, vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        """(row, inner product) of the ``n`` chunks nearest a unit ``vector``, best first."""
        ...

    def search_lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        """(row, BM25 score) of the ``n`` best chunks for ``query``'s terms, best first."""
        ...

    def chunks_at(self, rows: list[int]) -> list[Chunk]:
        """The chunks a search returned as ``rows``, in that order."""
        ...

    def chunks_by_id(self, chunk_ids: list[str]) -> list[Chunk]:
        """The chunks with these ids, in that order (ids not in the index are left out)."""
        ...

    def has_term(self, term: str) -> bool:
        """Whether the (tokenized) ``term`` occurs in any chunk."""
        ...


def sentence_texts(chunks: list[Chunk]) -> list[str]:
    """The distinct sentences of ``chunks``, in order of first appearance."""
    return list(dict.fromkeys(s for c in chunks for s in chunk_sentences(c.text)))


@dataclass
class IndexStore:
    """Chunks, their vectors and the BM25 index, with the manifest that describes them."""

    chunks: list[Chunk]
    dense: faiss.Index
    lexical: LexicalIndex
    manifest: dict[str, Any] = field(default_factory=dict)
    sentences: SentenceVectors | None = None

    def __post_init__(self) -> None:
        if self.sentences is None:
            self.sentences = SentenceVectors.empty(self.dim)
        if self.dense.ntotal != len(self.chunks) or self.lexical.size != len(self.chunks):
            raise ValueError(
                f"index parts disagree: {len(self.chunks)} chunks, {self.dense.ntotal} vectors, "
                f"{self.lexical.size} BM25 rows"
            )
        self._row = {c.id: i for i, c in enumerate(self.chunks)}

    @classmethod
    def build(cls, chunks: list[Chunk], vectors: np.ndarray, manifest: dict[str, Any],
              sentences: SentenceVectors | None = None) -> "IndexStore":
        """A store over ``chunks`` and their ``vectors`` (and their sentences' vectors, when given)."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        dim = int(manifest["embedder"]["dim"])
        if len(vectors) and vectors.shape[1] != dim:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, manifest says {dim}")
        dense = make_faiss_index(vectors, dim)
        manifest = dict(manifest)
        manifest["tokenizer"] = TOKENIZER
        manifest["index_type"] = "hnsw" if isinstance(dense, faiss.IndexHNSWFlat) else "flat"
        return cls(chunks, dense, LexicalIndex.build([c.text for c in chunks]), manifest, sentences)

    @property
    def dim(self) -> int:
        return int(self.dense.d)

    def row_of(self, chunk_id: str) -> int | None:
        return self._row.get(chunk_id)

    # -- the Store protocol ----------------------------------------------------

    def count(self) -> int:
        return len(self.chunks)

    def search_dense(self, vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        scores, rows = self.dense.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), n)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def search_lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        return self.lexical.search(query, n)

    def chunks_at(self, rows: list[int]) -> list[Chunk]:
        return [self.chunks[r] for r in rows]

    def chunks_by_id(self, chunk_ids: list[str]) -> list[Chunk]:
        return [self.chunks[r] for cid in chunk_ids if (r := self._row.get(cid)) is not None]

    def has_term(self, term: str) -> bool:
        return self.lexical.has_term(term)

    def file_chunks(self, chunk_ids: list[str]) -> tuple[list[Chunk], np.ndarray] | None:
        """The chunks with these ids and their vectors, or None unless the index has them all
        (reused when updating an index)."""
        rows = [r for cid in chunk_ids if (r := self._row.get(cid)) is not None]
        if len(rows) != len(chunk_ids):
            return None
        return [self.chunks[r] for r in rows], self.vectors(rows)

    def vectors_of_texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of chunks whose text is one of ``texts`` (reused for re-cut chunks)."""
        by_text = {c.text: n for n, c in enumerate(self.chunks)}
        found = [t for t in dict.fromkeys(texts) if t in by_text]
        return dict(zip(found, self.vectors([by_text[t] for t in found])))

    def vectors(self, rows: list[int]) -> np.ndarray:
        """Stored vectors of the given rows (reused when updating an index)."""
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self.dense.reconstruct(int(r)) for r in rows]).astype(np.float32)

    # -- persistence ---------------------------------------------------------

    def save(self, index_dir: str | Path) -> None:
        """Write the index to ``index_dir`` atomically (temp folder, fsync, rename)."""
        index_dir = Path(index_dir).resolve()
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_dir.parent / f".{index_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            faiss.write_index(self.dense, str(tmp / "vectors.faiss"))
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
                for chunk in self.chunks:
                    fh.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
            self.lexical.save(tmp / "bm25")
            assert self.sentences is not None
            self.sentences.save(tmp / "sentences")
            manifest = dict(self.manifest, format_version=FORMAT_VERSION)
            manifest.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            manifest["counts"] = {**manifest.get("counts", {}), "chunks": len(self.chunks),
                                  "sentences": len(self.sentences)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
            _fsync_tree(tmp)
            _swap(tmp, index_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.manifest = manifest

    @classmethod
    def load(
        cls,
        index_dir: str | Path,
        *,
        model_id: str | None = None,
        dim: int | None = None,
    ) -> "IndexStore":
        """Load and check an index; refuse one built by another embedder, dim or format."""
        index_dir = Path(index_dir)
        for attempt in range(3):
            source = readable_dir(index_dir)
            manifest = _read_manifest_at(source, index_dir)
            check_manifest(manifest, index_dir, model_id=model_id, dim=dim)
            try:
                dense = faiss.read_index(str(source / "vectors.faiss"))
                if isinstance(dense, faiss.IndexHNSW):
                    dense.hnsw.efSearch = HNSW_EF_SEARCH  # an index saved with an older setting
                with open(source / "chunks.jsonl", encoding="utf-8") as fh:
                    chunks = [Chunk.from_dict(json.loads(line)) for line in fh if line.strip()]
                lexical = LexicalIndex.load(source / "bm25")
                sentences = SentenceVectors.load(source / "sentences")
                if sentences.vectors.shape[1:] != (dense.d,):
                    raise ValueError(f"sentence vectors of shape {sentences.vectors.shape}, index dim {dense.d}")
                return cls(chunks, dense, lexical, manifest, sentences)
            except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
                if source != index_dir and attempt < 2:
                    continue  # the save we read from finished meanwhile: read the new index
                raise IndexMismatchError(
                    f"the index at {index_dir} is damaged ({exc.__class__.__name__}: {exc}); "
                    + rebuild_hint(index_dir)
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover


#: In an index folder, names the engine that holds the index when it is not FAISS.
STORE_FILE = "store.json"
BACKENDS = ("faiss", "milvus")
#: The milvus-lite file in the index folder when no URI is given, and the Milvus collection's name.
LITE_FILE = "milvus.db"
DEFAULT_COLLECTION = "rag_chunks"


@dataclass(frozen=True)
class StoreTarget:
    """Which engine an index is written to: ``faiss`` (files in the index folder) or ``milvus``
    (``uri``: a milvus-lite file, relative to the index folder, or a server's ``http://…``)."""

    backend: str = "faiss"
    uri: str | None = None
    collection: str = DEFAULT_COLLECTION

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown store {self.backend!r}; use one of: {', '.join(BACKENDS)}")
        if self.uri and re.fullmatch(r"[\w.-]+:\d+", self.uri):
            raise ValueError(f"store URI {self.uri!r} looks like a server without a scheme; "
                             f"write http://{self.uri} (a milvus-lite file is a path ending in .db)")

    def resolved_uri(self, index_dir: Path) -> str:
        uri = self.uri or LITE_FILE
        if "://" in uri:
            return uri
        return str((Path(index_dir) / uri).resolve())

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "uri": self.uri or LITE_FILE, "collection": self.collection}


def recorded_target(index_dir: Path) -> StoreTarget | None:
    """The engine the index at ``index_dir`` was written to (None when nothing is there)."""
    index_dir = Path(index_dir)
    path = index_dir / STORE_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return StoreTarget(data["backend"], data.get("uri"), data.get("collection", DEFAULT_COLLECTION))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexMismatchError(f"{path} is unreadable ({exc}); {rebuild_hint(index_dir)} --rebuild") from None
    return StoreTarget("faiss") if (readable_dir(index_dir) / MANIFEST).is_file() else None


def write_target(index_dir: Path, target: StoreTarget) -> None:
    """Record (atomically) that the index at ``index_dir`` lives in ``target``."""
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f".{STORE_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(target.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, index_dir / STORE_FILE)


def open_store(index_dir: str | Path, *, model_id: str | None = None, dim: int | None = None) -> "Store":
    """The index at ``index_dir``, from whichever engine holds it, checked against the embedder."""
    index_dir = Path(index_dir)
    return load_store(index_dir, recorded_target(index_dir), model_id=model_id, dim=dim)


def load_store(index_dir: Path, target: StoreTarget | None, *, model_id: str | None = None,
               dim: int | None = None) -> "Store":
    """The index at ``index_dir`` kept in ``target`` (None: FAISS files), checked against the embedder."""
    if target is not None and target.backend == "milvus":
        from rag.milvus_store import MilvusStore

        return MilvusStore.load(target.resolved_uri(index_dir), target.collection, index_dir,
                                model_id=model_id, dim=dim)
    return IndexStore.load(index_dir, model_id=model_id, dim=dim)


def readable_dir(index_dir: Path) -> Path:
    """Where the index at ``index_dir`` can be read now.

    Normally ``index_dir`` itself.  While another thread or process is between the two
    renames of its save, the index it is replacing is read from its ``.old`` folder,
    which is complete; an interrupted save whose writer died is recovered first.
    """
    recover(index_dir)
    if (index_dir / MANIFEST).is_file():
        return index_dir
    live = [p for p in index_dir.parent.glob(f".{index_dir.name}.old-*")
            if (pid := _owner(p)) is not None and _alive(pid) and (p / MANIFEST).is_file()]
    return max(live, key=lambda p: p.stat().st_mtime) if live else index_dir


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """The manifest of the index at ``index_dir`` (see :func:`readable_dir`), from whichever engine."""
    if (Path(index_dir) / STORE_FILE).is_file():  # a Milvus index: the manifest is the collection's
        return open_store(index_dir).manifest
    return _read_manifest_at(readable_dir(index_dir), index_dir)


def _read_manifest_at(source: Path, index_dir: Path) -> dict[str, Any]:
    path = source / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(f"no index at {index_dir}; build one with: rag index FOLDER --index-dir {index_dir}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexMismatchError(f"the manifest at {path} is unreadable ({exc}); {rebuild_hint(index_dir)}") from None
    if not isinstance(manifest, dict):
        raise IndexMismatchError(f"the manifest at {path} is not a JSON object; {rebuild_hint(index_dir)}")
    return manifest


def check_manifest(manifest: dict[str, Any], index_dir: Path, *, model_id: str | None, dim: int | None) -> None:
    """Raise :class:`IndexMismatchError` if the manifest does not fit this embedder and format."""
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index at {index_dir} has format version {version}, this rag reads {FORMAT_VERSION}; "
            + rebuild_hint(index_dir)
        )
    if manifest.get("tokenizer") != TOKENIZER:
        raise IndexMismatchError(
            f"the index at {index_dir} was tokenized with '{manifest.get('tokenizer')}', "
            f"this rag uses '{TOKENIZER}'; " + rebuild_hint(index_dir)
        )
    embedder = manifest.get("embedder") or {}
    if model_id is not None and embedder.get("model_id") != model_id:
        raise IndexMismatchError(
            f"the index at {index_dir} was built with embedder '{embedder.get('model_id')}', "
            f"but the configured embedder is '{model_id}'; " + rebuild_hint(index_dir)
        )
    if dim is not None and embedder.get("dim") != dim:
        raise IndexMismatchError(
            f"the index at {index_dir} has vectors of dim {embedder.get('dim')}, "
            f"the configured embedder gives {dim}; " + rebuild_hint(index_dir)
        )


def _owner(path: Path) -> int | None:
    """The pid in a temp or old folder's name (``.NAME.tmp-PID-XXXX``), if any."""
    parts = path.name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def recover(index_dir: Path) -> None:
    """Put back an index whose save died between its two renames; clear dead temp folders.

    Folders whose writer is still alive are left alone: that save is in progress.
    """
    parent = index_dir.parent
    if not parent.is_dir():
        return
    name = index_dir.name

    def dead(p: Path) -> bool:
        pid = _owner(p)
        return pid is None or not _alive(pid)

    try:
        olds = sorted((p for p in parent.glob(f".{name}.old-*") if dead(p)), key=lambda p: p.stat().st_mtime)
        if olds and not (index_dir / MANIFEST).is_file():
            log.warning("restoring the index at %s from an interrupted save", index_dir)
            if index_dir.exists():
                shutil.rmtree(index_dir, ignore_errors=True)
            os.rename(olds.pop(), index_dir)
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
        for tmp in parent.glob(f".{name}.tmp-*"):
            if dead(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    except FileNotFoundError:
        pass  # another process recovered or cleaned it first


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap(tmp: Path, index_dir: Path) -> None:
    old = None
    if index_dir.exists():
        old = index_dir.parent / f".{index_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(index_dir, old)
    os.rename(tmp, index_dir)
    _fsync_dir(index_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        else:
            _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
