"""The Milvus store on a real milvus-lite database: the same retrieval as the FAISS index,
incremental updates that rewrite only the edited document, a crash mid-update that leaves
the old index whole, the CLI and the chat UI (a real browser) unchanged on top of it, and
clear errors for a missing extra or a switch of engine without --rebuild."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_helpers import writable_copy

from rag.assistant import Assistant
from rag.errors import IndexMismatchError, StoreError
from rag.indexing import IndexingError, index_folder
from rag.retrieval import Retriever
from rag.store import STORE_FILE, IndexStore, StoreTarget, open_store

pytest.importorskip("pymilvus", reason="the 'scale' extra is not installed (pip install -e '.[scale]')")
from rag.milvus_store import MilvusStore, client_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MILVUS = StoreTarget("milvus")


@pytest.fixture(scope="module")
def milvus_index(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path, embedder) -> Path:  # noqa: ANN001
    index_dir = tmp_path_factory.mktemp("milvus") / "index"
    index_folder(seeds_dir, index_dir, embedder, show_progress=False, store=MILVUS)
    return index_dir


def _rows(store: MilvusStore) -> list[dict]:
    return store.client.query(store.collection, filter="id >= 0", output_fields=["version", "chunk"])


def test_milvus_ranks_like_faiss_on_the_dev_set(milvus_index: Path, seed_store: IndexStore, embedder) -> None:  # noqa: ANN001
    store = open_store(milvus_index, model_id=embedder.model_id, dim=embedder.dim)
    assert isinstance(store, MilvusStore)
    assert json.loads((milvus_index / STORE_FILE).read_text())["backend"] == "milvus"
    assert not (milvus_index / "vectors.faiss").exists()  # nothing of the index is kept in FAISS files
    assert store.count() == seed_store.count() and store.manifest["files"].keys() == seed_store.manifest["files"].keys()
    milvus, faiss = Retriever(store, embedder), Retriever(seed_store, embedder)
    questions = [json.loads(line)["question"] for line in (ROOT / "eval" / "dev.jsonl").read_text().splitlines()]
    shared = []
    for q in questions:
        a, b = milvus.search(q, 5), faiss.search(q, 5)
        shared.append(len({h.chunk.id for h in a} & {h.chunk.id for h in b}))
        assert all(h.chunk.text == seed_store.chunks_by_id([h.chunk.id])[0].text for h in a)
    assert sum(shared) / len(shared) >= 4.0, shared
    top = milvus.search("Chatham House rule", 5)[0]
    assert top.chunk.id == faiss.search("Chatham House rule", 5)[0].chunk.id
    assert "Chatham House" in top.chunk.text and top.chunk.page_start >= 1
    # Offsets point into the document's text as for FAISS; the key terms are known to the store.
    assert store.has_term("chatham") and not store.has_term("zzyzxqv")
    # The manifest in the collection's properties is checked as the FAISS index's is.
    with pytest.raises(IndexMismatchError, match="built with embedder"):
        open_store(milvus_index, model_id="local:another-model", dim=embedder.dim)
    with pytest.raises(IndexMismatchError, match="dim"):
        open_store(milvus_index, model_id=embedder.model_id, dim=embedder.dim + 1)


def test_answers_on_milvus_match_answers_on_faiss(milvus_index: Path, seed_index, embedder) -> None:  # noqa: ANN001
    _, faiss_dir, _ = seed_index
    on_milvus = Assistant(milvus_index, "extractive", embedder=embedder)
    on_faiss = Assistant(faiss_dir, "extractive", embedder=embedder)
    questions = [json.loads(line)["question"] for line in (ROOT / "eval" / "dev.jsonl").read_text().splitlines()][:12]
    same = sum(on_milvus.ask(q).text == on_faiss.ask(q).text for q in questions)
    assert same >= 11, same
    answer = on_milvus.ask("Which rule did the report follow so that no comments are attributed to individuals?")
    assert not answer.abstained and "Chatham House" in answer.text and answer.citations
    doc = on_milvus.indexed_document(answer.citations[0].source)
    assert doc is not None and answer.citations[0].quote in doc.text


def test_reindexing_an_edit_rewrites_only_that_document(tmp_path: Path, seeds_dir: Path, embedder) -> None:  # noqa: ANN001
    corpus = writable_copy(seeds_dir, tmp_path / "corpus")
    # A name with letters outside ASCII and a quote: it ends up inside Milvus filter expressions.
    (corpus / "Résumé « défense » 日本 \"q\".md").write_text(
        "# Résumé\n\nThe depot in Kestrel Bay stores 17 spare rotor blades for the fleet.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    index_folder(corpus, index_dir, embedder, show_progress=False, store=MILVUS)
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    assert isinstance(store, MilvusStore)
    before = {(r["version"], r["chunk"]["id"]) for r in _rows(store)}
    edited = next(corpus.glob("Résumé*.md"))
    edited.write_text(edited.read_text(encoding="utf-8") + "\n\nA closing note on the zephyr quota of 4,812 units.\n",
                      encoding="utf-8")
    report = index_folder(corpus, index_dir, embedder, show_progress=False)  # stays in Milvus
    assert report.updated == [edited.name] and len(report.unchanged) == 2
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    after = {(r["version"], r["chunk"]["id"]) for r in _rows(store)}
    kept = {row for row in before if not row[0].startswith(edited.name + "@")}
    assert kept <= after  # the other document's rows were not touched
    versions = {v for v, _ in after}
    assert versions == {f"{n}@{e['hash']}" for n, e in store.manifest["files"].items()}  # old version deleted
    assert len(after) == store.count() == sum(len(e["chunk_ids"]) for e in store.manifest["files"].values())
    hit = Retriever(store, embedder).search("zephyr quota units", 1)[0]
    assert hit.chunk.source == edited.name and "4,812" in hit.chunk.text
    # Removing the file removes its rows.
    edited.unlink()
    index_folder(corpus, index_dir, embedder, show_progress=False)
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    assert {r["chunk"]["source"] for r in _rows(store)} == {p.name for p in corpus.iterdir() if p.suffix in (".txt", ".md")}
    # A writer that started before another update published fails instead of mixing the two.
    stale = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    (corpus / "late.md").write_text("# Late\n\nA note added by a second writer.\n", encoding="utf-8")
    index_folder(corpus, index_dir, embedder, show_progress=False)
    with pytest.raises(StoreError, match="at the same time"):
        stale.write([], embedder.embed_documents([]), stale.manifest, [], embedder.embed_documents([]))
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)  # the second writer's index, whole
    assert "late.md" in store.manifest["files"] and len(_rows(store)) == store.count()
    assert Retriever(store, embedder).search("note added by a second writer", 1)[0].chunk.source == "late.md"
    # A writer overtaken while it writes (another update publishes meanwhile) does not publish.
    slow = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    name = "late.md"
    chunks, vectors = slow.file_chunks(slow.manifest["files"][name]["chunk_ids"])
    manifest = {**slow.manifest, "files": {name: {**slow.manifest["files"][name], "hash": "0" * 64}}}
    (corpus / "later.md").write_text("# Later\n\nA third note.\n", encoding="utf-8")
    real = slow._write_sentences

    def overtaken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        index_folder(corpus, index_dir, embedder, show_progress=False)  # the other writer publishes now
        return real(*args, **kwargs)

    slow._write_sentences = overtaken
    with pytest.raises(StoreError, match="at the same time"):
        slow.write(chunks, vectors, manifest, [], vectors[:0])
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    assert "later.md" in store.manifest["files"] and len(_rows(store)) == store.count()
    assert not any(r["version"] == f"{name}@{'0' * 64}" for r in _rows(store))


def test_a_crash_mid_update_leaves_the_old_index_whole(tmp_path: Path, seeds_dir: Path, embedder,  # noqa: ANN001
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = writable_copy(seeds_dir, tmp_path / "corpus")
    index_dir = tmp_path / "index"
    index_folder(corpus, index_dir, embedder, show_progress=False, store=MILVUS)
    edited = sorted(corpus.glob("*.txt"))[0]
    old_text = edited.read_text(encoding="utf-8")
    edited.write_text(old_text.replace("Chatham House", "Zephyr Harbour"), encoding="utf-8")
    client = client_for(str((index_dir / "milvus.db").resolve()))
    real_upsert = client._client.upsert
    calls = {"n": 0}

    def dies_after_one_batch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("the machine lost power")
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(client._client, "upsert", dies_after_one_batch)
    with pytest.raises(RuntimeError, match="lost power"):
        index_folder(corpus, index_dir, embedder, show_progress=False)
    assert calls["n"] == 2  # the new version's chunks were written, then the power went
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    retriever = Retriever(store, embedder)
    texts = [h.chunk.text for h in retriever.search("Zephyr Harbour", 10)]
    assert not any("Zephyr Harbour" in t for t in texts)  # the half-written version is invisible
    assert "Chatham House" in retriever.search("Chatham House rule", 1)[0].chunk.text
    monkeypatch.setattr(client._client, "upsert", real_upsert)
    report = index_folder(corpus, index_dir, embedder, show_progress=False)
    assert report.updated == [edited.name]
    store = open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    assert not store.hidden
    assert len(_rows(store)) == store.count()  # what the crash left behind was deleted
    assert "Zephyr Harbour" in Retriever(store, embedder).search("Zephyr Harbour", 1)[0].chunk.text


def test_switching_engine_needs_rebuild(tmp_path: Path, seeds_dir: Path, embedder) -> None:  # noqa: ANN001
    index_dir = tmp_path / "index"
    index_folder(seeds_dir, index_dir, embedder, show_progress=False, store=MILVUS)
    with pytest.raises(IndexingError, match="--rebuild"):
        index_folder(seeds_dir, index_dir, embedder, show_progress=False, store=StoreTarget("faiss"))
    with pytest.raises(ValueError, match="http://localhost:19530"):
        StoreTarget("milvus", "localhost:19530")
    report = index_folder(seeds_dir, index_dir, embedder, show_progress=False, store=StoreTarget("faiss"), rebuild=True)
    assert report.chunks > 0 and not (index_dir / STORE_FILE).exists()
    assert isinstance(open_store(index_dir, model_id=embedder.model_id, dim=embedder.dim), IndexStore)


def test_an_unreachable_server_is_a_clear_error() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="http://127.0.0.1:9"):
        MilvusStore("http://127.0.0.1:9", "rag_chunks")
    assert time.monotonic() - started < 60


def test_cli_index_search_and_ask_on_milvus(tmp_path: Path, seed_store: IndexStore) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_SHOW_PROGRESS": "0"}
    rag = [sys.executable, "-m", "rag.cli"]
    index = str(tmp_path / "index")

    def run(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run([*rag, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "Traceback" not in res.stderr and "ERROR" not in res.stderr, res.stderr[-2000:]
        return res

    run("index", "seeds", "--index-dir", index, "--store", "milvus")
    hits = json.loads(run("search", "Chatham House rule", "--index-dir", index, "--json").stdout)["hits"]
    faiss_top = seed_store.chunks_at([seed_store.search_lexical("chatham house rule", 1)[0][0]])[0]
    assert hits[0]["source"] == faiss_top.source and "Chatham House" in hits[0]["text"]
    answer = run("ask", "Which rule did the report follow so that no comments are attributed to individuals?", "--index-dir", index).stdout
    assert "Chatham House" in answer and "[1]" in answer


def test_chat_ui_on_a_milvus_index(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright
    from reliability_helpers import AppProcess
    from test_browser import CHROMIUM, CHROMIUM_ARGS, Session

    corpus = writable_copy(ROOT / "seeds", tmp_path / "corpus")
    with AppProcess(tmp_path, corpus, env={"RAG_STORE__BACKEND": "milvus"}) as app, sync_playwright() as p:
        assert json.loads((tmp_path / "index" / STORE_FILE).read_text())["backend"] == "milvus"
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            session = Session(browser, app.url)
            page = session.page
            session.ask("Which rule did the report follow so that no comments are attributed to individuals?")
            expect(page.locator("#rag-chat .rag-answer").last).to_contain_text("Chatham House")
            expect(page.locator("#rag-sources .rag-source mark", has_text="Chatham House")).to_be_visible()
            doc = tmp_path / "zephyr-depot.md"
            doc.write_text("# Zephyr depot\n\nThe Zephyr Harbour depot stores 4,812 spare propeller blades.\n",
                           encoding="utf-8")
            session.upload(doc)  # indexed into the Milvus collection by the running app
            session.ask("How many spare propeller blades does the Zephyr Harbour depot store?")
            expect(page.locator("#rag-chat .rag-answer").last).to_contain_text("4,812")
            session.close()
        finally:
            browser.close()
        assert "Traceback" not in app.log()
