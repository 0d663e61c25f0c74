"""IndexStore: save/load round trip, refusing foreign indexes, interrupted swaps."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexMismatchError, IndexNotFoundError
from rag.retrieval import Retriever
from rag.sentences import sentence_spans
from rag.store import FORMAT_VERSION, MANIFEST, IndexStore, recover

QUERIES = [
    "Which rule did the report follow so that no comments are attributed to individuals?",
    "defence spending target of two percent of GDP",
    "aging workforce and labour shortage in the industrial base",
    "why should Canada produce its own ammunition",
]


def _results(retriever: Retriever) -> dict[tuple[str, str], list[tuple[str, float, float | None, float | None]]]:
    out = {}
    for query in QUERIES:
        for mode in ("dense", "lexical", "hybrid"):
            out[(query, mode)] = [
                (h.chunk.id, h.score, h.dense_score, h.lexical_score) for h in retriever.search(query, 8, mode)
            ]
    return out


def _copy_index(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_save_load_gives_identical_results(tmp_path: Path, seed_store: IndexStore, embedder) -> None:
    rows = list(range(len(seed_store.chunks)))
    built = IndexStore.build(list(seed_store.chunks), seed_store.vectors(rows), seed_store.manifest,
                             seed_store.sentences)
    before = _results(Retriever(built, embedder))
    assert all(before.values())
    # The three modes really rank differently, so each is checked on its own.
    assert before[(QUERIES[2], "dense")] != before[(QUERIES[2], "lexical")]

    built.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "bm25", "chunks.jsonl", MANIFEST, "sentences", "vectors.faiss"
    ]
    loaded = IndexStore.load(tmp_path / "index", model_id=embedder.model_id, dim=embedder.dim)
    assert loaded.chunks == built.chunks
    assert np.array_equal(loaded.vectors(rows), built.vectors(rows))
    assert len(loaded.sentences) > 100
    assert np.array_equal(loaded.sentences.keys, seed_store.sentences.keys)
    assert np.array_equal(loaded.sentences.vectors, seed_store.sentences.vectors)
    assert _results(Retriever(loaded, embedder)) == before


def test_saved_files_are_not_pickles(seed_index) -> None:
    _, index_dir, _ = seed_index
    npys = list((index_dir / "bm25").glob("*.npy")) + list((index_dir / "sentences").glob("*.npy"))
    assert len(npys) >= 5
    for npy in npys:
        np.load(npy, allow_pickle=False)  # raises if an object array had been pickled
    for line in (index_dir / "chunks.jsonl").read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {
            "id", "doc_id", "source", "title", "text", "char_start", "char_end", "page_start", "page_end"
        }


def test_every_sentence_of_the_chunks_has_its_vector_stored(seed_store: IndexStore, embedder) -> None:
    """The index holds the vector of every sentence of its chunks, as the embedder gives it now."""
    texts = list(dict.fromkeys(c.text[a:b] for c in seed_store.chunks for a, b in sentence_spans(c.text)))
    assert len(texts) > 100 and len(seed_store.sentences) == len(texts)
    stored = np.vstack([seed_store.sentences.get(t) for t in texts])
    fresh = embedder.embed_documents(texts)
    assert (np.sum(stored * fresh, axis=1) >= 0.999).all()
    assert seed_store.sentences.get("A sentence that is in no seed document.") is None


def test_missing_sentence_vectors_are_a_damaged_index(tmp_path: Path, seed_index, embedder) -> None:
    index_dir = _copy_index(seed_index[1], tmp_path / "index")
    (index_dir / "sentences" / "vectors.npy").unlink()
    with pytest.raises(IndexMismatchError, match="damaged.*rag index"):
        IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)


def _edit_manifest(index_dir: Path, edit) -> None:
    path = index_dir / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("what", ["model_id", "dim", "format_version"])
def test_foreign_index_is_refused(tmp_path: Path, seed_index, embedder, what: str) -> None:
    index_dir = _copy_index(seed_index[1], tmp_path / "index")
    IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)  # fine before the edit

    def edit(manifest):
        if what == "model_id":
            manifest["embedder"]["model_id"] = "sentence-transformers/all-mpnet-base-v2"
        elif what == "dim":
            manifest["embedder"]["dim"] = 768
        else:
            manifest["format_version"] = FORMAT_VERSION + 1

    _edit_manifest(index_dir, edit)
    with pytest.raises(IndexMismatchError) as info:
        IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    message = str(info.value)
    assert "rag index" in message
    assert str(index_dir) in message
    expected = {"model_id": "all-mpnet-base-v2", "dim": "768", "format_version": str(FORMAT_VERSION + 1)}[what]
    assert expected in message


def test_damaged_index_is_refused_with_rebuild_hint(tmp_path: Path, seed_index, embedder) -> None:
    index_dir = _copy_index(seed_index[1], tmp_path / "index")
    (index_dir / "vectors.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(IndexMismatchError, match="rag index"):
        IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)


def test_missing_index_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="rag index"):
        IndexStore.load(tmp_path / "nowhere")


def test_interrupted_swap_is_recovered_on_load(tmp_path: Path, seed_index, seed_retriever, embedder) -> None:
    index_dir = _copy_index(seed_index[1], tmp_path / "index")
    expected = [(h.chunk.id, h.score) for h in seed_retriever.search(QUERIES[0], 5)]
    # The crash came after "index -> .index.old-*" and before "tmp -> index".
    old = tmp_path / ".index.old-abcd1234"
    os.rename(index_dir, old)
    assert not index_dir.exists()

    store = IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    assert index_dir.is_dir() and not old.exists()
    assert [(h.chunk.id, h.score) for h in Retriever(store, embedder).search(QUERIES[0], 5)] == expected


def test_recover_prefers_complete_index_and_clears_debris(tmp_path: Path, seed_index) -> None:
    index_dir = _copy_index(seed_index[1], tmp_path / "index")
    manifest = (index_dir / MANIFEST).read_bytes()
    leftover_old = _copy_index(seed_index[1], tmp_path / ".index.old-0000aaaa")
    dead_tmp = tmp_path / ".index.tmp-999999999-deadbeef"  # no such pid
    dead_tmp.mkdir()
    (dead_tmp / "vectors.faiss").write_bytes(b"partial")
    live_tmp = tmp_path / f".index.tmp-{os.getpid()}-0123abcd"  # a save still running here
    live_tmp.mkdir()
    other = tmp_path / ".other.tmp-999999999-deadbeef"  # another index's folder: not ours
    other.mkdir()

    recover(index_dir)
    assert (index_dir / MANIFEST).read_bytes() == manifest
    assert not leftover_old.exists()
    assert not dead_tmp.exists()
    assert live_tmp.exists()
    assert other.exists()


def test_save_replaces_previous_index(tmp_path: Path, seed_store: IndexStore, embedder) -> None:
    index_dir = tmp_path / "index"
    rows = list(range(len(seed_store.chunks)))
    IndexStore.build(seed_store.chunks, seed_store.vectors(rows), seed_store.manifest).save(index_dir)
    small = IndexStore.build(seed_store.chunks[:3], seed_store.vectors(rows[:3]), seed_store.manifest)
    small.save(index_dir)
    loaded = IndexStore.load(index_dir)
    assert [c.id for c in loaded.chunks] == [c.id for c in seed_store.chunks[:3]]
    assert loaded.manifest["counts"]["chunks"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no temp or old folder left


def test_hnsw_index_saved_with_a_narrower_search_is_searched_at_the_current_width(
        tmp_path: Path, seed_store: IndexStore, embedder) -> None:
    from rag.store import HNSW_EF_SEARCH, make_faiss_index

    rows = list(range(len(seed_store.chunks)))
    vectors = seed_store.vectors(rows)
    dense = make_faiss_index(vectors, vectors.shape[1], "hnsw")
    assert dense.hnsw.efSearch == HNSW_EF_SEARCH
    dense.hnsw.efSearch = 64  # as an index saved by an earlier release
    manifest = dict(seed_store.manifest, index_type="hnsw")
    IndexStore(list(seed_store.chunks), dense, seed_store.lexical, manifest, seed_store.sentences).save(
        tmp_path / "index")
    loaded = IndexStore.load(tmp_path / "index", model_id=embedder.model_id, dim=embedder.dim)
    assert loaded.dense.hnsw.efSearch == HNSW_EF_SEARCH
    # Over the seeds' few chunks the graph finds exactly what exact search finds.
    assert _results(Retriever(loaded, embedder)) == _results(Retriever(seed_store, embedder))
