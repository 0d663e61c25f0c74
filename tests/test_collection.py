"""The multi-domain QA collection: real documents, verified evidence, a clean split by document."""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from rag.collection import COLLECTION, SPLITS, Corpus, load_collection
from rag.evaluation import QAItem, dataset_errors, load_qa
from rag.loaders import is_supported, load_document

KINDS = {"factoid", "number", "date", "version", "name", "list", "definition", "yes-no", "procedure", "unanswerable"}


@cache
def _corpora() -> tuple[Corpus, ...]:
    return tuple(load_collection())


def _new() -> list[Corpus]:
    """The corpora besides the seeds (whose dev set is checked by test_dev_set.py)."""
    return [c for c in _corpora() if c.name != "seeds"]


@cache
def _items(name: str) -> tuple[QAItem, ...]:
    corpus = next(c for c in _corpora() if c.name == name)
    return tuple(load_qa(corpus.qa))


def test_size_genres_and_unanswerable_share() -> None:
    corpora = _new()
    assert len(corpora) >= 5
    assert len({c.genre for c in corpora}) == len(corpora)
    suffixes = {p.suffix for c in corpora for p in c.folder.iterdir() if is_supported(p)}
    assert {".pdf", ".html", ".txt"} <= suffixes
    items = [i for c in corpora for i in _items(c.name)]
    assert len(items) >= 300
    unanswerable = [i for i in items if not i.answerable]
    assert len(unanswerable) * 4 >= len(items)
    assert len({i.id for i in items}) == len(items)


@pytest.mark.parametrize("name", [c.name for c in load_collection() if c.name != "seeds"])
def test_items_are_well_formed(name: str) -> None:
    corpus = next(c for c in _corpora() if c.name == name)
    for line in corpus.qa.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        assert set(d) == {"id", "question", "answer", "answerable", "kind", "doc", "evidence"}, d["id"]
        assert d["kind"] in KINDS, d["id"]
        assert d["doc"] in corpus.split, d["id"]
        if d["answerable"]:
            assert d["kind"] != "unanswerable" and d["answer"] and d["evidence"], d["id"]
        else:
            assert d["kind"] == "unanswerable" and d["answer"] is None and d["evidence"] == [], d["id"]
        for ev in d["evidence"]:
            paged = ev["doc"].endswith(".pdf")
            assert ("page" in ev) == paged, f"{d['id']}: PDF evidence carries its page, other evidence none"


@pytest.mark.parametrize("name", [c.name for c in load_collection() if c.name != "seeds"])
def test_every_quote_is_in_its_document_on_its_page(name: str) -> None:
    corpus = next(c for c in _corpora() if c.name == name)
    assert dataset_errors(list(_items(name)), corpus.folder) == []


def test_dataset_errors_catch_a_wrong_page() -> None:
    corpus = next(c for c in _new() if any(d.endswith(".pdf") for d in c.split))
    item = next(i for i in _items(corpus.name) if i.evidence and "page" in i.evidence[0])
    ev = dict(item.evidence[0], page=item.evidence[0]["page"] + 3)
    moved = QAItem(item.id, item.question, item.answer, True, item.kind, [ev], item.doc)
    errors = dataset_errors([moved], corpus.folder)
    assert len(errors) == 1 and errors[0]["error"].startswith(f"quote not on page {ev['page']}")


def test_split_is_by_document_and_complete() -> None:
    for corpus in _corpora():
        files = {p.name for p in corpus.folder.iterdir() if is_supported(p)}
        assert set(corpus.split) == files, f"{corpus.name}: every document is in exactly one split"
        assert set(corpus.split.values()) <= set(SPLITS)
        for item in _items(corpus.name):
            assert corpus.split_of(item) in SPLITS
    # At least six genres have documents in both splits, each with enough questions on both
    # sides; some corpora only add fitting data, and at least five are held out whole (genres
    # the models never saw fitted), each with enough questions to score.
    both = held_out = 0
    for corpus in _new():
        per_split = Counter(corpus.split_of(i) for i in _items(corpus.name))
        splits = set(corpus.split.values())
        for split in splits:
            assert per_split[split] >= 20, (corpus.name, per_split)
        both += splits == {"tune", "test"}
        held_out += splits == {"test"}
    assert both >= 6 and held_out >= 5


def test_a_question_about_documents_in_both_splits_is_refused(tmp_path: Path) -> None:
    corpus = next(c for c in _new() if len(set(c.split.values())) == 2)
    tune = next(d for d, s in corpus.split.items() if s == "tune")
    test = next(d for d, s in corpus.split.items() if s == "test")
    item = QAItem("x", "q?", "a", True, "factoid", [{"doc": tune, "quote": "a"}, {"doc": test, "quote": "b"}], tune)
    with pytest.raises(Exception, match="not in one split"):
        corpus.split_of(item)


def test_pdf_quotes_land_on_real_pages() -> None:
    """Evidence pages are pages of the loaded document (the loader keeps PDF page numbers)."""
    for corpus in _new():
        for item in _items(corpus.name):
            for ev in item.evidence:
                if "page" in ev:
                    doc = load_document(corpus.folder / ev["doc"])
                    assert 1 <= ev["page"] <= max(s.page for s in doc.pages), item.id


def test_collection_file_is_the_default() -> None:
    assert COLLECTION.is_file()
    data = json.loads(COLLECTION.read_text(encoding="utf-8"))
    assert set(data["corpora"]) == {c.name for c in _corpora()}


def test_cached_corpus_index_is_recut_when_the_text_pipeline_changes(tmp_path: Path, embedder) -> None:
    """A collection index cut by other code is re-cut, not reused, although its files, embedder
    and tokenizer match: otherwise a refit on a long-used machine sees other chunks."""
    from rag.collection import corpus_index
    from rag.config import Settings
    from rag.store import MANIFEST, IndexStore

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The pump runs at 40 litres a minute. It was installed in 2019.\n", encoding="utf-8")
    corpus = Corpus("tiny", folder, tmp_path / "qa.jsonl", "text", {"a.txt": "tune"})
    settings = Settings()
    cache_dir = tmp_path / "cache"
    index_dir = corpus_index(corpus, settings, embedder, cache_dir)
    created = (index_dir / MANIFEST).stat().st_mtime_ns

    assert corpus_index(corpus, settings, embedder, cache_dir) == index_dir
    assert (index_dir / MANIFEST).stat().st_mtime_ns == created  # unchanged: reused

    # An index whose chunks came from other code: tampered chunk text, and another pipeline id.
    chunks = index_dir / "chunks.jsonl"
    chunks.write_text(chunks.read_text(encoding="utf-8").replace("pump", "PUMP"), encoding="utf-8")
    manifest = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
    manifest["chunking"]["pipeline"] = "older text pipeline"
    (index_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    corpus_index(corpus, settings, embedder, cache_dir)
    store = IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    assert any("pump" in c.text for c in store.chunks) and not any("PUMP" in c.text for c in store.chunks)
    assert store.manifest["chunking"]["pipeline"] != "older text pipeline"


UNTYPED = COLLECTION.parent / "qa" / "untyped"


@pytest.mark.parametrize("path", sorted(UNTYPED.glob("*.jsonl")), ids=lambda p: p.stem)
def test_untyped_questions_are_verified_tune_questions_without_typed_openers(path: Path) -> None:
    """eval/qa/untyped (benchmarks/untyped_questions.py): questions about a corpus's tune
    documents, asked without an opener that names the kind of value, every quote verified."""
    corpus = next(c for c in _corpora() if c.name == path.stem)
    items = load_qa(path)
    assert dataset_errors(items, corpus.folder) == []
    known = {i.id for i in _items(corpus.name)}
    assert len({i.id for i in items}) == len(items) and not known & {i.id for i in items}
    assert {i.question for i in items}.isdisjoint(i.question for i in _items(corpus.name))
    for item in items:
        assert corpus.split_of(item) == "tune", item.id
        assert item.kind in KINDS and item.answerable == (item.kind != "unanswerable"), item.id
        assert not re.match(r"\s*(how (many|much|long)|when|who|whom|whose|which version|what (year|date|version))\b",
                            item.question, re.IGNORECASE), item.id
