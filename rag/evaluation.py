"""The evaluation harness: run a QA set through the assistant and score citations.

QA set: JSONL, one item a line::

    {"id", "question", "answer", "answerable", "kind", "doc"?, "evidence": [{"doc", "quote", "page"?}]}

``doc`` names the document a question is about (unanswerable ones included), which is
what splits a collection into tune and test by document; ``page`` (1-based) is the
page of a paged document (PDF) that holds the quote.

``evaluate`` writes ``results.jsonl``, ``summary.json`` and ``report.md`` into
``out_dir`` and returns the summary.  Metric definitions are in :mod:`rag.metrics`
and in the report itself.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import RagError
from rag.loaders import load_document
from rag.types import Document
from rag.metrics import covers, percentile, recall_at, reciprocal_rank, token_f1

RECALL_KS = (1, 3, 5, 10)


class DatasetError(RagError):
    """The QA file is malformed, or its evidence is not in the indexed documents."""


@dataclass
class QAItem:
    id: str
    question: str
    answer: str | None
    answerable: bool
    kind: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    doc: str | None = None

    @property
    def docs(self) -> list[str]:
        """The documents this question is about (its own ``doc`` and its evidence's)."""
        return list(dict.fromkeys([self.doc] * bool(self.doc) + [e["doc"] for e in self.evidence]))


def _parse_item(d: Any) -> QAItem:
    if not isinstance(d, dict):
        raise TypeError("a line must be a JSON object")
    if not isinstance(d["answerable"], bool):
        raise TypeError("'answerable' must be true or false")
    evidence = d.get("evidence") or []
    if not isinstance(evidence, list) or not all(
        isinstance(e, dict) and isinstance(e.get("doc"), str) and isinstance(e.get("quote"), str) for e in evidence
    ):
        raise TypeError("'evidence' must be a list of {\"doc\": …, \"quote\": …} objects")
    if any("page" in e and (not isinstance(e["page"], int) or e["page"] < 1) for e in evidence):
        raise TypeError("an evidence 'page' must be a positive integer")
    if not str(d["question"]).strip():
        raise ValueError("'question' is empty")
    return QAItem(str(d["id"]), str(d["question"]), d.get("answer"), d["answerable"],
                  str(d.get("kind") or "unknown"), evidence, d.get("doc") or None)


def load_qa(path: str | Path) -> list[QAItem]:
    """Read a QA set; malformed lines raise :class:`DatasetError` naming the line."""
    items = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = _parse_item(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{n}: not a QA item ({exc.__class__.__name__}: {exc})") from None
            if item.id in seen:
                raise DatasetError(f"{path}:{n}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    if not items:
        raise DatasetError(f"{path} holds no questions")
    return items


def dataset_errors(items: list[QAItem], corpus_dir: Path) -> list[dict[str, str]]:
    """Evidence quotes that do not occur in their document (as the loader stores it),
    or not on the page the item gives."""
    docs: dict[str, Document | None] = {}
    errors = []
    for item in items:
        for ev in item.evidence:
            name = ev.get("doc", "")
            if name not in docs:
                try:
                    docs[name] = load_document(corpus_dir / name)
                except (RagError, OSError):
                    docs[name] = None
            doc = docs[name]
            quote = ev.get("quote", "")
            error = None
            if doc is None:
                error = "document not in corpus"
            elif not covers(doc.text, quote):
                error = "quote not in document"
            elif "page" in ev and ev["page"] not in evidence_pages(doc, quote):
                error = f"quote not on page {ev['page']} (found on {evidence_pages(doc, quote) or 'no single page'})"
            if error:
                errors.append({"id": item.id, "doc": name, "quote": quote, "error": error})
    return errors


def evidence_pages(doc: Document, quote: str) -> list[int]:
    """The pages of ``doc`` whose text covers ``quote``; for a quote that runs over a page
    break, the page where it starts."""
    own = [s.page for s in doc.pages if covers(doc.text[s.start:s.end], quote)]
    if own:
        return own
    return [s.page for i, s in enumerate(doc.pages[:-1])
            if covers(doc.text[s.start:doc.pages[i + 1].start + 400], quote)]


def _score(rows: list[dict[str, Any]], items: dict[str, QAItem]) -> dict[str, Any]:
    """Metrics over result rows of one configuration."""
    answerable = [r for r in rows if items[r["id"]].answerable]
    unanswerable = [r for r in rows if not items[r["id"]].answerable]
    quotes = {r["id"]: [e["quote"] for e in items[r["id"]].evidence] for r in rows}
    out: dict[str, Any] = {"questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable)}
    for k in RECALL_KS:
        out[f"recall@{k}"] = _mean(recall_at(r["retrieved"], quotes[r["id"]], k) for r in answerable)
    out["mrr@10"] = _mean(reciprocal_rank(r["retrieved"], quotes[r["id"]], 10) for r in answerable)
    cited = [(r, p) for r in rows for p in r["cited"]]
    good = sum(any(covers(p, q) for q in quotes[r["id"]]) for r, p in cited)
    out["citation_precision"] = good / len(cited) if cited else 0.0
    all_quotes = [(r, q) for r in answerable for q in quotes[r["id"]]]
    out["citation_recall"] = (sum(any(covers(p, q) for p in r["cited"]) for r, q in all_quotes) / len(all_quotes)
                              if all_quotes else 0.0)
    sentences = sum(r["checks"].get("sentences", 0) for r in rows)
    out["support_rate"] = (sum(r["checks"].get("supported", 0) for r in rows) / sentences) if sentences else 0.0
    out["answer_f1"] = _mean(0.0 if r["abstained"] else token_f1(r["answer"], items[r["id"]].answer or "")
                             for r in answerable)
    paged = [hit for r in answerable for hit in r.get("page_hits", [])]
    out["cited_pages"] = len(paged)
    out["page_accuracy"] = sum(paged) / len(paged) if paged else None
    out["abstention_rate"] = _mean(float(r["abstained"]) for r in unanswerable)
    out["false_abstention_rate"] = _mean(float(r["abstained"]) for r in answerable)
    lat = [r["latency_s"] for r in rows]
    out["latency_p50_s"] = percentile(lat, 50)
    out["latency_p95_s"] = percentile(lat, 95)
    return out


def _mean(values: Iterable[float]) -> float:
    xs = list(values)
    return sum(xs) / len(xs) if xs else 0.0


def summarise(rows: list[dict[str, Any]], items: list[QAItem]) -> dict[str, Any]:
    """Per configuration: overall metrics and the same metrics by ``kind``."""
    by_id = {i.id: i for i in items}
    summary: dict[str, Any] = {}
    for config in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == config]
        kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in mine:
            kinds[by_id[r["id"]].kind].append(r)
        summary[config] = {"overall": _score(mine, by_id),
                           "by_kind": {k: _score(v, by_id) for k, v in sorted(kinds.items())}}
    return summary


def source_dir(assistant: Any, corpus_dir: str | Path | None = None) -> Path:
    """The folder evidence documents are read from: ``corpus_dir`` if given, else the
    folder the assistant's index was built from (its manifest), else the corpus setting."""
    if corpus_dir:
        return Path(corpus_dir)
    recorded = assistant.retriever.store.manifest.get("source_dir")
    if recorded and (Path(assistant.index_dir) / recorded).is_dir():
        return (Path(assistant.index_dir) / recorded).resolve()
    return Path(assistant.settings.paths.corpus_dir)


def check_evidence(items: list[QAItem], corpus: Path) -> list[dict[str, str]]:
    """:func:`dataset_errors`, raising :class:`DatasetError` when more than half of the
    evidence quotes cannot be found: the QA set is then about other documents, and
    scoring only what is left would report a meaningless figure."""
    errors = dataset_errors(items, corpus)
    quotes = sum(len(i.evidence) for i in items)
    if quotes and len(errors) * 2 > quotes:
        missing = sorted({e["doc"] for e in errors})
        raise DatasetError(
            f"{len(errors)} of {quotes} evidence quotes are not in the documents under {corpus} "
            f"(documents not found or not matching: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}); "
            "index the folder the QA set was written for, or pass --corpus-dir")
    return errors


def evaluate(
    qa_path: str | Path,
    assistant: Any,
    *,
    backends: list[str] | None = None,
    k: int | None = None,
    out_dir: str | Path | None = None,
    corpus_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    select: Callable[[QAItem], bool] | None = None,
) -> dict[str, Any]:
    """Run every question (or those ``select`` keeps) through ``assistant`` for each
    backend and score the answers.

    Evidence documents are read from ``corpus_dir``, else from the folder the index was
    built from.  Returns ``{"configs": {name: {"overall": …, "by_kind": …}}, "dataset_errors": […], …}``
    and, with ``out_dir``, writes results.jsonl, summary.json and report.md there.
    """
    items = [i for i in load_qa(qa_path) if select is None or select(i)]
    if not items:
        raise DatasetError(f"{qa_path}: no question selected")
    corpus = source_dir(assistant, corpus_dir)
    errors = check_evidence(items, corpus)
    bad_ids = {e["id"] for e in errors}
    scored = [i for i in items if i.id not in bad_ids]
    backends = backends or [assistant.backend]
    k = k or assistant.settings.retrieval.k
    rows: list[dict[str, Any]] = []
    pages = evidence_page_map(scored, corpus)
    for backend in backends:
        for n, item in enumerate(scored, start=1):
            if progress:
                progress(f"[{backend}] {n}/{len(scored)} {item.id}")
            rows.append(run_one(assistant, item, backend, k, pages.get(item.id)))
    summary = {
        "qa_file": str(qa_path),
        "k": k,
        "configs": summarise(rows, scored),
        "dataset_errors": errors,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if out_dir is not None:
        write_outputs(Path(out_dir), rows, summary)
    return summary


def evidence_page_map(items: list[QAItem], corpus: Path) -> dict[str, list[list[int]]]:
    """Per question, per evidence quote of a paged document: the pages that hold it
    (the item's ``page`` when given, else where the quote is found)."""
    docs: dict[str, Document | None] = {}
    out: dict[str, list[list[int]]] = {}
    for item in items:
        pages = []
        for ev in item.evidence:
            if ev["doc"] not in docs:
                try:
                    docs[ev["doc"]] = load_document(corpus / ev["doc"])
                except (RagError, OSError):
                    docs[ev["doc"]] = None
            doc = docs[ev["doc"]]
            if doc is None or len(doc.pages) < 2:
                continue
            pages.append([ev["page"]] if "page" in ev else evidence_pages(doc, ev["quote"]))
        if pages:
            out[item.id] = pages
    return out


def run_one(assistant: Any, item: QAItem, backend: str, k: int,
            evidence_pages: list[list[int]] | None = None) -> dict[str, Any]:
    """One question through one configuration, as a results.jsonl row."""
    t0 = time.perf_counter()
    answer = assistant.ask(item.question, k=k, backend=backend)
    latency = time.perf_counter() - t0
    # Retrieval is scored on the passages the answer saw, extended to 10 by a deeper search.
    seen = [h.chunk for h in answer.passages]
    deeper = [h.chunk for h in assistant.retrieve(item.question, max(10, k))]
    ranked = seen + [c for c in deeper if c.id not in {s.id for s in seen}][: max(0, 10 - len(seen))]
    by_chunk = {h.chunk.id: h.chunk.text for h in answer.passages}
    cited_ids = list(dict.fromkeys(c.chunk_id for c in answer.citations))
    row = {
        "id": item.id,
        "question": item.question,
        "config": backend,
        "retrieved": [c.text for c in ranked],
        "retrieved_ids": [c.id for c in ranked],
        "answer": answer.text,
        "cited": [by_chunk[c] for c in cited_ids],
        "cited_ids": cited_ids,
        "quotes": [c.quote for c in answer.citations],
        "abstained": answer.abstained,
        "backend_used": answer.backend,
        "checks": answer.checks,
        "latency_s": round(latency, 4),
    }
    if evidence_pages and item.answerable:
        # Cited page holds the evidence: a citation's page is one where an evidence quote is.
        wanted = {p for ps in evidence_pages for p in ps}
        row["page_hits"] = [c.page in wanted for c in answer.citations]
    return row


_METRICS = [
    ("recall@1", "Retrieval recall@1"), ("recall@3", "recall@3"), ("recall@5", "recall@5"),
    ("recall@10", "recall@10"), ("mrr@10", "MRR@10"), ("citation_precision", "Citation precision"),
    ("citation_recall", "Citation recall"), ("support_rate", "Support rate"), ("answer_f1", "Answer token-F1"),
    ("page_accuracy", "Cited page holds the evidence"), ("abstention_rate", "Abstention (unanswerable)"), ("false_abstention_rate", "False abstention (answerable)"),
    ("latency_p50_s", "Latency p50 (s)"), ("latency_p95_s", "Latency p95 (s)"),
]


def render_report(summary: dict[str, Any]) -> str:
    """report.md: the metrics side by side per configuration, then by kind."""
    configs = summary["configs"]
    names = list(configs)
    lines = [f"# Evaluation of {summary['qa_file']}", "",
             f"k = {summary['k']} passages per question; created {summary['created']}.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in _METRICS:
        lines.append(f"| {label} | " + " | ".join(_fmt(configs[n]["overall"][key]) for n in names) + " |")
    for n in names:
        lines += ["", f"## {n} by kind", "",
                  "| kind | n | recall@5 | MRR@10 | cit. precision | cit. recall | F1 | abstained |",
                  "|---|---|---|---|---|---|---|---|"]
        for kind, m in configs[n]["by_kind"].items():
            abst = m["abstention_rate"] if kind == "unanswerable" else m["false_abstention_rate"]
            lines.append(f"| {kind} | {m['questions']} | {m['recall@5']:.3f} | {m['mrr@10']:.3f} | "
                         f"{m['citation_precision']:.3f} | {m['citation_recall']:.3f} | {m['answer_f1']:.3f} | {abst:.3f} |")
    lines += ["", "## Dataset errors", ""]
    if summary["dataset_errors"]:
        lines += [f"- {e['id']} ({e['doc']}): {e['error']}: “{e['quote']}”" for e in summary["dataset_errors"]]
    else:
        lines.append("None: every evidence quote occurs in its document.")
    lines += ["", "Definitions: a passage covers an evidence quote when at least half of the quote's word "
              "4-grams occur in it (all its words for quotes under four words), after lower-casing, NFKC and "
              "quote normalisation. Citation precision: cited passages covering some evidence quote over all "
              "cited passages. Citation recall: evidence quotes covered by some cited passage over all quotes. "
              "Support rate: generated sentences the support check kept, over all generated sentences. "
              "Cited page holds the evidence: citations (of answerable questions over paged documents) whose "
              "page is a page of an evidence quote, over all such citations.", ""]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_outputs(out_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "report.md").write_text(render_report(summary), encoding="utf-8")
