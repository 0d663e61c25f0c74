"""Retrieval over the seed index: hybrid ranking, modes, fusion and the LangChain adapter."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever

from rag.retrieval import MODES, LangChainRetriever, Retriever, rrf, weighted
from rag.store import IndexStore

CHATHAM_Q = "Which rule did the report follow so that no comments are attributed to individuals?"
CDAI = "cdai-defence-industrial-base-cooperation-2025.txt"
OPED = "defence-production-op-ed-2025.txt"


def test_chatham_house_chunk_ranks_first_in_hybrid(seed_retriever: Retriever) -> None:
    hits = seed_retriever.search(CHATHAM_Q, k=5, mode="hybrid")
    assert len(hits) == 5
    assert "Chatham House" in hits[0].chunk.text
    assert hits[0].chunk.source == CDAI
    assert hits[0].dense_score is not None and hits[0].lexical_score is not None
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.chunk.id for h in hits}) == 5


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_finds_the_passage(seed_retriever: Retriever, mode: str) -> None:
    hits = seed_retriever.search(CHATHAM_Q, k=5, mode=mode)
    assert any("Chatham House" in h.chunk.text for h in hits)
    if mode == "dense":
        assert all(h.lexical_score is None and h.dense_score == h.score for h in hits)
    if mode == "lexical":
        assert all(h.dense_score is None and h.lexical_score == h.score for h in hits)


def test_question_about_the_op_ed_retrieves_the_op_ed(seed_retriever: Retriever) -> None:
    hits = seed_retriever.search("Who wrote that Canada needs defence production, not only procurement?", k=3)
    assert hits[0].chunk.source == OPED


def test_hit_chunks_point_into_their_documents(seed_retriever: Retriever, seed_index) -> None:
    folder, _, _ = seed_index
    from rag.loaders import load_document

    texts = {p.name: load_document(p).text for p in folder.glob("*.txt")}
    for hit in seed_retriever.search("NATO two percent spending target", k=8):
        c = hit.chunk
        assert texts[c.source][c.char_start:c.char_end] == c.text


def test_search_arguments(seed_retriever: Retriever, seed_store: IndexStore) -> None:
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        seed_retriever.search("anything", mode="sparse")
    assert seed_retriever.search("anything", k=0) == []
    n = len(seed_store.chunks)
    assert len(seed_retriever.search("defence industrial base", k=n + 10, mode="dense")) == n
    assert seed_retriever.search("zzzqqq xxyyzz", k=5, mode="lexical") == []


def test_swap_serves_the_new_store(seed_store: IndexStore, embedder) -> None:
    retriever = Retriever(seed_store, embedder)
    rows = [i for i, c in enumerate(seed_store.chunks) if c.source == OPED]
    oped_only = IndexStore.build([seed_store.chunks[r] for r in rows], seed_store.vectors(rows), seed_store.manifest)
    assert retriever.search(CHATHAM_Q, 1)[0].chunk.source == CDAI
    retriever.swap(oped_only)
    assert retriever.store is oped_only
    assert {h.chunk.source for h in retriever.search(CHATHAM_Q, 5)} == {OPED}


def test_fusers() -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    lexical = [(2, 12.0), (4, 3.0)]
    fused = rrf(dense, lexical)
    assert fused[0][0] == 2  # in both rankings
    assert {r for r, _ in fused} == {1, 2, 3, 4}
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    w = weighted(dense, lexical, alpha=0.5)
    assert w[0][0] == 2 and dict(w)[3] == pytest.approx(0.0)


def test_fusion_choice_is_used(seed_store: IndexStore, embedder) -> None:
    by_rrf = Retriever(seed_store, embedder, fusion="rrf").search(CHATHAM_Q, 5)
    by_weighted = Retriever(seed_store, embedder, fusion="weighted").search(CHATHAM_Q, 5)
    assert "Chatham House" in by_weighted[0].chunk.text
    assert [h.score for h in by_rrf] != [h.score for h in by_weighted]


def test_langchain_retriever_invoke(seed_retriever: Retriever) -> None:
    lc = LangChainRetriever(retriever=seed_retriever, k=3)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke(CHATHAM_Q)
    hits = seed_retriever.search(CHATHAM_Q, 3)
    assert len(docs) == 3
    assert all(isinstance(d, LCDocument) for d in docs)
    assert [d.page_content for d in docs] == [h.chunk.text for h in hits]
    assert "Chatham House" in docs[0].page_content
    for doc, hit in zip(docs, hits):
        assert doc.id == hit.chunk.id
        assert doc.metadata["source"] == hit.chunk.source
        assert doc.metadata["title"] == hit.chunk.title
        assert doc.metadata["page"] == hit.chunk.page_start == 1
        assert doc.metadata["rank"] == hit.rank
    assert docs[0].metadata["title"] == "Force Development: Defence and Industrial Base Cooperation Amongst Allies"

    lexical = LangChainRetriever(retriever=seed_retriever, k=2, mode="lexical").invoke(CHATHAM_Q)
    assert [d.id for d in lexical] == [h.chunk.id for h in seed_retriever.search(CHATHAM_Q, 2, "lexical")]
    assert len(lc.batch([CHATHAM_Q, "shipbuilding"])) == 2
