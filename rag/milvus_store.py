"""An index kept in Milvus: an embedded ``milvus-lite`` file, or a Milvus server or cluster by URI.

One collection holds the chunks: the chunk itself (JSON), its vector, and its BM25 terms,
from which Milvus's own BM25 function derives a sparse vector, so both halves of hybrid
retrieval run inside Milvus; the two rankings are fused here exactly as for the FAISS
index (:func:`rag.retrieval.weighted`).  A second collection holds the vector of every
sentence, keyed by a hash of its text.  The index folder keeps only ``store.json``
(where the collection lives) and, for milvus-lite, the database file.

**Consistency.**  The manifest (embedder, format, files and their chunk ids), the published
*generation* and the list of *hidden* document versions are one JSON property of the
collection, written in one call.  Rows carry their document version (``name@content-hash``)
and the generation of the update that wrote them; a search sees the rows of its snapshot's
generation or earlier, minus its hidden versions.  An update writes the new versions as the
next generation (unseen so far), then in one property write publishes the new manifest and
generation while hiding the versions it replaces, and only then deletes those.  A crash at
any point leaves the old or the new index visible, never half of a document; the next update
deletes what a crash left.  A store opened before an update never sees its new rows, and loses
the replaced versions only at the update's last step (the assistant reloads right after).
One writer at a time: an update that finds another has published since it began stops with
an error before it deletes or publishes anything (a check, not a lock).  Sentence vectors are keyed by
their text, so one left behind by a removed document is never wrong, only unused; they are
dropped with ``--rebuild``.

Needs the ``scale`` extra (``pip install -e .[scale]``); pymilvus is imported only here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, IndexMismatchError, IndexNotFoundError, StoreError
from rag.lexical import TOKENIZER, tokenize
from rag.store import DEFAULT_COLLECTION, SentenceVectors, check_manifest
from rag.types import Chunk

log = logging.getLogger(__name__)

_STATE = "rag.state"
#: Rows per insert call (gRPC messages stay far below their 64 MiB limit at 384 dims).
_BATCH = 512
#: Milvus caps a VARCHAR at 65,535 bytes; chunk text is capped by the chunker far below this.
_MAX_VARCHAR = 65535
#: BM25 parameters of the FAISS index's bm25s model, so both engines rank alike.
BM25_K1, BM25_B = 1.5, 0.75


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError:
        raise ConfigError("the Milvus store needs the 'scale' extra: pip install -e '.[scale]'") from None
    return pymilvus


class _Client:
    """A MilvusClient whose failures are :class:`~rag.errors.StoreError` naming the store."""

    def __init__(self, client: Any, uri: str, errors: tuple[type[BaseException], ...]) -> None:
        self._client, self._uri, self._errors = client, uri, errors

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if name in _RPCS:
                kwargs.setdefault("timeout", RPC_TIMEOUT_S)  # a stalled server fails, never hangs
            try:
                return method(*args, **kwargs)
            except self._errors as exc:
                raise StoreError(f"the Milvus store at {self._uri} failed ({name}): "
                                 f"{getattr(exc, 'message', None) or exc}") from None
        return call


#: Seconds a call to the Milvus server may take (a bulk insert of 512 rows takes well under 1 s).
RPC_TIMEOUT_S = 60.0
_RPCS = frozenset({"search", "query", "upsert", "delete", "flush", "has_collection", "describe_collection",
                   "create_collection", "drop_collection", "load_collection", "alter_collection_properties"})
_CLIENTS: dict[str, _Client] = {}
_CLIENTS_LOCK = threading.Lock()


def client_for(uri: str) -> _Client:
    """One MilvusClient per URI and process (a milvus-lite file admits one owner)."""
    pymilvus = _pymilvus()
    # milvus-lite's embedded server logs every call of an RPC it leaves out (AllocTimestamp,
    # which pymilvus tries and then does without) as an ERROR with a traceback.
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    with _CLIENTS_LOCK:
        if uri not in _CLIENTS:
            if "://" not in uri:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                client = pymilvus.MilvusClient(uri, timeout=30)
            except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds
                raise StoreError(f"cannot open the Milvus store at {uri}: {exc}") from None
            _CLIENTS[uri] = _Client(client, uri, (pymilvus.MilvusException,))
        return _CLIENTS[uri]


def _sentence_key(text: str) -> int:
    """The FAISS index's sentence key (:meth:`SentenceVectors.key`) made a positive INT64, as
    Milvus primary keys are."""
    return SentenceVectors.key(text) & ((1 << 63) - 1)


def _row_key(version: str, chunk_id: str) -> int:
    """The primary key of a chunk of one document version."""
    return _sentence_key(f"{version}\0{chunk_id}")


def _quote(values: list[str]) -> str:
    """A list of string literals for a Milvus filter expression.  Milvus reads \\" and \\\\ but
    not \\u escapes, so letters outside ASCII are written as they are (milvus-lite has no
    filter templates to pass values apart)."""
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def versions_of(manifest: dict[str, Any]) -> dict[str, str]:
    """Document name → its version label (``name@content-hash``) for every indexed file."""
    return {name: f"{name}@{entry.get('hash', '')}" for name, entry in manifest.get("files", {}).items()}


class MilvusSentences:
    """Sentence vectors in a Milvus collection, fetched in one query per batch of texts."""

    def __init__(self, client: Any, collection: str) -> None:
        self.client, self.collection = client, collection

    def get_many(self, texts: list[str]) -> list[np.ndarray | None]:
        keys = [_sentence_key(t) for t in texts]
        found: dict[int, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 1000):
            for row in self.client.query(self.collection, ids=unique[i:i + 1000], output_fields=["vector"]):
                found[int(row["key"])] = np.asarray(row["vector"], dtype=np.float32)
        return [found.get(k) for k in keys]


class MilvusStore:
    """A :class:`rag.store.Store` over a Milvus collection (see the module's notes)."""

    def __init__(self, uri: str, collection: str = DEFAULT_COLLECTION, index_dir: Path | None = None) -> None:
        self.uri, self.collection = uri, collection
        self.index_dir = index_dir
        self.client = client_for(uri)
        self.sentence_collection = f"{collection}_sentences"
        self._terms: dict[str, bool] = {}
        self._chunks: OrderedDict[int, Chunk] = OrderedDict()  # chunks of recent searches
        self._lock = threading.Lock()
        state = None
        if self.client.has_collection(collection):
            for name in (collection, self.sentence_collection):
                if self.client.has_collection(name):
                    self.client.load_collection(name)  # a new process finds collections released
            state = self._state()
        self.manifest: dict[str, Any] = state["manifest"] if state else {}
        self.hidden: list[str] = state["hidden"] if state else []
        self.gen: int = state["gen"] if state else 0
        self._dim = int(self.manifest.get("embedder", {}).get("dim", 0))

    # -- reading -------------------------------------------------------------

    @classmethod
    def load(cls, uri: str, collection: str, index_dir: Path, *, model_id: str | None = None,
             dim: int | None = None) -> "MilvusStore":
        """Open and check the index; refuse one built by another embedder, dim or format."""
        store = cls(uri, collection, index_dir)
        if not store.manifest:
            raise IndexNotFoundError(f"no index in the Milvus collection '{collection}' at {uri}; "
                                     f"build one with: rag index FOLDER --index-dir {index_dir} --store milvus")
        check_manifest(store.manifest, index_dir, model_id=model_id, dim=dim)
        return store

    def _state(self) -> dict[str, Any] | None:
        props = self.client.describe_collection(self.collection).get("properties", {})
        if _STATE not in props:
            return None
        try:
            state = json.loads(props[_STATE])
            return {"manifest": dict(state["manifest"]), "gen": int(state["gen"]), "hidden": list(state["hidden"])}
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexMismatchError(f"the Milvus collection '{self.collection}' at {self.uri} has an unreadable "
                                     f"manifest ({exc}); rebuild it with: rag index FOLDER --store milvus --rebuild") from None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def sentences(self) -> MilvusSentences:
        return MilvusSentences(self.client, self.sentence_collection)

    def count(self) -> int:
        return int(self.manifest.get("counts", {}).get("chunks", 0))

    def _filter(self) -> str:
        # This snapshot's rows: none of a later generation (an update in progress, or one that
        # was published after this store was opened), none of a version it had hidden.
        expression = f"gen <= {self.gen}"
        return expression + (f" and version not in {_quote(self.hidden)}" if self.hidden else "")

    def search_dense(self, vector: np.ndarray, n: int) -> list[tuple[int, float]]:
        res = self.client.search(self.collection, data=[np.asarray(vector, dtype=np.float32).ravel().tolist()],
                                 anns_field="dense", limit=n, filter=self._filter(), output_fields=["chunk"],
                                 search_params={"metric_type": "IP"})[0]
        self._remember(res)
        return [(int(h["id"]), float(h["distance"])) for h in res]

    def search_lexical(self, query: str, n: int) -> list[tuple[int, float]]:
        terms = " ".join(tokenize(query))
        if not terms:
            return []
        res = self.client.search(self.collection, data=[terms], anns_field="sparse", limit=n,
                                 filter=self._filter(), output_fields=["chunk"],
                                 search_params={"metric_type": "BM25"})[0]
        self._remember(res)
        # BM25 scores are never negative; milvus-lite reports them negated (best first all the same).
        return [(int(h["id"]), abs(float(h["distance"]))) for h in res]

    def _remember(self, results: Any) -> None:
        """Keep the chunks a search returned: the retriever asks for the best of them next.
        (Searching for ids alone and then querying the k chunks by id was slower: at 100,000
        chunks in milvus-lite, hybrid p50 468 ms against 399 ms; benchmarks/milvus_store.py.)"""
        with self._lock:
            for hit in results:
                self._chunks[int(hit["id"])] = Chunk.from_dict(hit["entity"]["chunk"])
                self._chunks.move_to_end(int(hit["id"]))
            while len(self._chunks) > 4096:
                self._chunks.popitem(last=False)

    def chunks_at(self, rows: list[int]) -> list[Chunk]:
        with self._lock:
            found = {r: c for r in rows if (c := self._chunks.get(r)) is not None}
        rest = [r for r in dict.fromkeys(rows) if r not in found]
        if rest:
            found.update((int(r["id"]), Chunk.from_dict(r["chunk"]))
                         for r in self.client.query(self.collection, ids=rest, output_fields=["chunk"]))
        if len(found) < len(set(rows)):
            raise StoreError(f"the index in the Milvus collection '{self.collection}' was updated during this "
                             "search; ask again")
        return [found[r] for r in rows]

    def _rows_by_id(self, chunk_ids: list[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        files = self.manifest.get("files", {})
        version_of = {cid: v for name, v in versions_of(self.manifest).items() for cid in files[name]["chunk_ids"]}
        keys = {_row_key(version_of[cid], cid): cid for cid in chunk_ids if cid in version_of}
        out: dict[str, dict[str, Any]] = {}
        key_list = list(keys)
        for i in range(0, len(key_list), 1000):
            for row in self.client.query(self.collection, ids=key_list[i:i + 1000], output_fields=fields):
                out[keys[int(row["id"])]] = row
        return out

    def chunks_by_id(self, chunk_ids: list[str]) -> list[Chunk]:
        rows = self._rows_by_id(chunk_ids, ["chunk"])
        return [Chunk.from_dict(rows[cid]["chunk"]) for cid in chunk_ids if cid in rows]

    def has_term(self, term: str) -> bool:
        if term not in self._terms:
            self._terms[term] = bool(self.search_lexical(term, 1))
        return self._terms[term]

    # -- reuse when updating -----------------------------------------------------

    def file_chunks(self, chunk_ids: list[str]) -> tuple[list[Chunk], np.ndarray] | None:
        rows = self._rows_by_id(chunk_ids, ["chunk", "dense"])
        if len(rows) != len(chunk_ids):
            return None
        chunks = [Chunk.from_dict(rows[c]["chunk"]) for c in chunk_ids]
        return chunks, np.asarray([rows[c]["dense"] for c in chunk_ids], dtype=np.float32).reshape(len(chunks), -1)

    def vectors_of_texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """None reused: Milvus is not asked for chunks by text, so re-cut chunks are embedded again."""
        return {}

    # -- writing -------------------------------------------------------------

    def _create(self, dim: int) -> None:
        pymilvus = _pymilvus()
        dt = pymilvus.DataType
        schema = self.client.create_schema(auto_id=False)
        schema.add_field("id", dt.INT64, is_primary=True)
        schema.add_field("version", dt.VARCHAR, max_length=_MAX_VARCHAR)
        schema.add_field("gen", dt.INT64)
        schema.add_field("chunk", dt.JSON)
        schema.add_field("terms", dt.VARCHAR, max_length=_MAX_VARCHAR, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field("dense", dt.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", dt.SPARSE_FLOAT_VECTOR)
        schema.add_function(pymilvus.Function(name="bm25", function_type=pymilvus.FunctionType.BM25,
                                              input_field_names=["terms"], output_field_names=["sparse"]))
        params = self.client.prepare_index_params()
        params.add_index(field_name="dense", index_type="FLAT", metric_type="IP")
        params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                         params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})
        # Strong consistency: a search right after an update sees all of it (by default a Milvus
        # server may answer from a view a few seconds old).
        self.client.create_collection(self.collection, schema=schema, index_params=params, consistency_level="Strong")
        if not self.client.has_collection(self.sentence_collection):
            self.client.create_collection(self.sentence_collection, dimension=dim, primary_field_name="key",
                                          vector_field_name="vector", id_type="int", metric_type="IP",
                                          consistency_level="Strong")

    def _publish(self, manifest: dict[str, Any], gen: int, hidden: list[str]) -> None:
        """Make ``manifest`` and the rows of generations up to ``gen`` (but ``hidden`` versions)
        what searches see: one property, written in one call."""
        state = json.dumps({"manifest": manifest, "gen": gen, "hidden": sorted(set(hidden))}, ensure_ascii=False)
        self.client.alter_collection_properties(self.collection, {_STATE: state})
        self.manifest, self.gen, self.hidden = manifest, gen, sorted(set(hidden))
        self._dim = int(manifest["embedder"]["dim"])
        self._terms.clear()

    def _delete(self, expression: str) -> None:
        self.client.delete(self.collection, filter=expression)

    def _delete_versions(self, versions: list[str]) -> None:
        for i in range(0, len(versions), 100):
            self._delete(f"version in {_quote(versions[i:i + 100])}")

    def write(self, chunks: list[Chunk], vectors: np.ndarray, manifest: dict[str, Any],
              sentence_texts: list[str], sentence_vectors: np.ndarray, progress: bool = False) -> None:
        """Make the collection hold exactly ``chunks``, touching only the documents whose version
        changed (see the module's notes on consistency), and add these sentences' vectors (the
        caller passes those the collection lacks)."""
        from tqdm.auto import tqdm

        dim = int(manifest["embedder"]["dim"])
        if not self.client.has_collection(self.collection):
            self._create(dim)
        manifest = dict(manifest, tokenizer=TOKENIZER, index_type="milvus")
        manifest["counts"] = {**manifest.get("counts", {}), "chunks": len(chunks)}
        self._check_unchanged()
        old = set(versions_of(self.manifest).values())
        new_of = versions_of(manifest)
        new = set(new_of.values())
        to_write = new - old
        # What an interrupted update left behind goes first: rows of a generation never
        # published, and versions a published update had superseded but not yet deleted.
        self._delete(f"gen > {self.gen}")
        self._delete_versions(self.hidden)
        gen = self.gen + 1  # rows of this generation stay out of every search until published
        version_of = {cid: new_of[name] for name, entry in manifest["files"].items() for cid in entry["chunk_ids"]}
        rows = [{"id": _row_key(version_of[c.id], c.id), "version": version_of[c.id], "gen": gen,
                 "chunk": c.to_dict(), "terms": " ".join(tokenize(c.text)),
                 "dense": np.asarray(v, dtype=np.float32).tolist()}
                for c, v in zip(chunks, vectors) if version_of.get(c.id) in to_write]
        for i in tqdm(range(0, len(rows), _BATCH), desc="writing to Milvus", unit="batch",
                      disable=not progress or len(rows) <= _BATCH):
            self.client.upsert(self.collection, rows[i:i + _BATCH])
        self._write_sentences(sentence_texts, sentence_vectors)
        self.client.flush(self.collection)
        stale = sorted(old - new)
        try:
            self._check_unchanged()  # and once more before publishing
        except StoreError:
            # The other writer's generation has this number too: take back what was written here.
            ids = [r["id"] for r in rows]
            for i in range(0, len(ids), 1000):
                self.client.delete(self.collection, ids=ids[i:i + 1000])
            raise
        self._publish(manifest, gen, stale)
        self._delete_versions(stale)
        self._publish(manifest, gen, [])

    def _check_unchanged(self) -> None:
        """Refuse to go on when another writer published since this store was opened: its rows
        would be taken for leftovers, or the two updates' rows mixed.  (One writer at a time is
        the rule: this catches a second one, it does not lock.)"""
        current = self._state() if self.client.has_collection(self.collection) else None
        if (current["gen"] if current else 0) != self.gen:
            raise StoreError(f"the index in '{self.collection}' at {self.uri} was updated by another writer "
                             "at the same time; run rag index again")

    def drop(self) -> None:
        """Delete both collections of this index (after another took its place)."""
        for name in (self.collection, self.sentence_collection):
            if self.client.has_collection(name):
                self.client.drop_collection(name)

    def _write_sentences(self, texts: list[str], vectors: np.ndarray) -> None:
        rows = list({(key := _sentence_key(t)): {"key": key, "vector": np.asarray(v, dtype=np.float32).tolist()}
                     for t, v in zip(texts, vectors)}.values())
        for i in range(0, len(rows), _BATCH * 4):
            self.client.upsert(self.sentence_collection, rows[i:i + _BATCH * 4])
        if rows:
            self.client.flush(self.sentence_collection)
