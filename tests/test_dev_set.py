"""The dev QA set (eval/dev.jsonl) is well formed and its evidence is really in the seeds."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from rag.evaluation import QAItem, dataset_errors, load_qa
from rag.loaders import load_document
from rag.metrics import covers

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "eval" / "dev.jsonl"
SEEDS = ROOT / "seeds"
KINDS = {"factoid", "paraphrase", "list", "definition", "footnote", "multi-hop", "cross-doc", "unanswerable"}
FIELDS = {"id", "question", "answer", "answerable", "kind", "evidence"}


@cache
def _items() -> tuple[QAItem, ...]:
    return tuple(load_qa(DEV))


@cache
def _raw(doc: str) -> str:
    return (SEEDS / doc).read_text(encoding="utf-8")


@cache
def _stored(doc: str) -> str:
    return load_document(SEEDS / doc).text


def _evidence() -> list[tuple[str, str, str]]:
    return [(i.id, ev["doc"], ev["quote"]) for i in _items() for ev in i.evidence]


def _evidence_ids() -> list[str]:
    return [f"{i.id}-{n}" for i in _items() for n, _ in enumerate(i.evidence)]


def test_every_line_is_a_qa_item() -> None:
    lines = [line for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, line in enumerate(lines, start=1):
        d = json.loads(line)
        assert set(d) == FIELDS, f"line {n}: fields {sorted(d)}"
        assert isinstance(d["answerable"], bool), f"line {n}: answerable must be a JSON boolean"
        assert isinstance(d["question"], str) and d["question"].strip(), f"line {n}: empty question"
        assert isinstance(d["evidence"], list), f"line {n}: evidence must be a list"
        for ev in d["evidence"]:
            assert isinstance(ev, dict) and set(ev) == {"doc", "quote"}, f"line {n}: evidence item {ev!r}"
            assert isinstance(ev["quote"], str) and ev["quote"].strip(), f"line {n}: empty quote"
    items = _items()
    assert len(items) == len(lines)                     # load_qa kept every line
    assert len({i.id for i in items}) == len(items)     # ids are unique (load_qa also checks)


def test_size_and_unanswerable_share() -> None:
    items = _items()
    assert len(items) >= 60
    unanswerable = [i for i in items if not i.answerable]
    assert len(unanswerable) >= 12
    for i in unanswerable:
        assert i.answer is None and i.evidence == [], i.id
        assert i.kind == "unanswerable", i.id


def test_answerable_items_have_answer_and_evidence() -> None:
    for i in _items():
        if i.answerable:
            assert isinstance(i.answer, str) and i.answer.strip(), i.id
            assert i.evidence, i.id
            assert i.kind != "unanswerable", i.id


def test_kinds_cover_every_question_type() -> None:
    counts = Counter(i.kind for i in _items())
    assert KINDS <= set(counts), f"missing kinds: {sorted(KINDS - set(counts))}"
    assert set(counts) <= KINDS, f"unknown kinds: {sorted(set(counts) - KINDS)}"


def test_multi_evidence_kinds() -> None:
    for i in _items():
        docs = {ev["doc"] for ev in i.evidence}
        if i.kind == "cross-doc":
            assert len(docs) >= 2, f"{i.id}: a cross-doc question needs evidence from two documents"
        if i.kind == "multi-hop":
            assert len(i.evidence) >= 2, f"{i.id}: a multi-hop question needs two or more quotes"


def test_evidence_documents_exist() -> None:
    for qid, doc, _ in _evidence():
        assert (SEEDS / doc).is_file(), f"{qid}: {doc} is not in seeds/"


@pytest.mark.parametrize("qid,doc,quote", _evidence(), ids=_evidence_ids())
def test_quote_is_verbatim_in_raw_file(qid: str, doc: str, quote: str) -> None:
    assert quote in _raw(doc), f"{qid}: quote not found verbatim in seeds/{doc}: {quote!r}"


@pytest.mark.parametrize("qid,doc,quote", _evidence(), ids=_evidence_ids())
def test_quote_is_covered_in_loaded_text(qid: str, doc: str, quote: str) -> None:
    assert covers(_stored(doc), quote), f"{qid}: the loader's text of {doc} does not cover {quote!r}"


def test_harness_finds_no_dataset_errors() -> None:
    assert dataset_errors(list(_items()), SEEDS) == []
