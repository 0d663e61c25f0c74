"""Score follow-up questions (``eval/followups.jsonl``): is a follow-up rewritten so that its
search finds the evidence, and is a question that stands on its own left alone?

Each item is a conversation of two turns over one corpus of the collection: an earlier
question, then the question scored, with the evidence quotes that answer it.  Items marked
``followup`` lean on the earlier turn ("When was it agreed?"); the others stand on their
own.  For each item the earlier question is asked through a
:class:`~rag.conversation.Conversation` (extractive), then the scored question is
rewritten as the conversation would, and scored:

- ``rewritten``: whether it was rewritten (wanted for follow-ups, unwanted otherwise);
- ``evidence@k``: whether a top-``k`` passage of its search holds an evidence quote, with
  the rewrite and, for comparison, searched as asked;
- ``cited``: whether the conversation's answer cites a sentence of the evidence.

    rag eval eval/followups.jsonl --split test
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag.collection import COLLECTION, SPLITS, corpus_index, load_collection
from rag.config import PROJECT_ROOT
from rag.evaluation import DatasetError
from rag.metrics import covers

FOLLOWUPS = PROJECT_ROOT / "eval" / "followups.jsonl"
#: The grid :data:`rag.followup.MAX_OWN_TERMS` is chosen from (on the tune split), and the
#: share of standalone questions the choice must leave unchanged (the product's target).
OWN_TERMS_GRID = (0, 1, 2, 3, 4, 5, 6, 8, 12)
STANDALONE_UNCHANGED = 0.95
#: The grid :data:`rag.followup.MIN_TOPIC_SIMILARITY` is chosen from (on the tune split).
TOPIC_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 1.01)


def is_followup_set(path: Path) -> bool:
    """Whether ``path`` is a follow-up set (JSONL whose records have ``turns``)."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        return Path(path).suffix == ".jsonl" and "turns" in json.loads(first)
    except (OSError, ValueError):
        return False


def load_followups(path: Path = FOLLOWUPS) -> list[dict[str, Any]]:
    """The items of a follow-up set, checked for the fields the scoring needs."""
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        missing = {"id", "corpus", "split", "followup", "turns", "question", "evidence"} - set(item)
        if missing or item["split"] not in SPLITS or not item["turns"] or not item["evidence"]:
            raise DatasetError(f"{path}:{n}: a follow-up item needs id, corpus, split (tune/test), followup, "
                               f"non-empty turns and evidence (missing {sorted(missing)})")
        items.append(item)
    return items


def choose(rows: list[dict[str, Any]], key: str, values: tuple[float, ...],
           cautious: float) -> tuple[float, dict[str, Any]]:
    """The value of ``values`` (rates in each row's ``key``) that leaves at least
    :data:`STANDALONE_UNCHANGED` of the standalone questions unchanged and, of those, finds the
    evidence for the most follow-ups (of several, the middle one); ``cautious`` (the value that
    rewrites least) when none leaves enough unchanged; and the rates for every value."""
    grid: dict[str, Any] = {}
    for value in values:
        alone = [not r[key][str(value)]["rewritten"] for r in rows if not r["followup"]]
        found = [r[key][str(value)]["evidence_at_k"] for r in rows if r["followup"]]
        grid[str(value)] = {"standalone_unchanged": round(sum(alone) / max(1, len(alone)), 4),
                            "followups_evidence_at_k": round(sum(found) / max(1, len(found)), 4)}
    ok = [v for v in values if grid[str(v)]["standalone_unchanged"] >= STANDALONE_UNCHANGED] or [cautious]
    top = max(grid[str(v)]["followups_evidence_at_k"] for v in ok)
    tied = sorted(v for v in ok if grid[str(v)]["followups_evidence_at_k"] == top)
    return tied[(len(tied) - 1) // 2], grid  # the middle of the best values: the widest margin


@contextmanager
def _setting(name: str, value: float) -> Iterator[None]:
    """:mod:`rag.followup`'s setting ``name`` set to ``value`` for a while."""
    import rag.followup as followup

    kept = getattr(followup, name)
    setattr(followup, name, value)
    try:
        yield
    finally:
        setattr(followup, name, kept)


def evaluate_followups(split: str, path: Path = FOLLOWUPS, collection: Path = COLLECTION, k: int = 5,
                       out_dir: Path | None = None, backend: str = "extractive",
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score the items of ``split``; the summary (also written to ``out_dir``, when given)."""
    from rag.assistant import Assistant
    from rag.config import Settings
    from rag.embeddings import embedder_for

    items = [i for i in load_followups(path) if i["split"] == split]
    if not items:
        raise DatasetError(f"{path} has no items in the {split} split")
    corpora = {c.name: c for c in load_collection(collection)}
    settings = Settings()
    embedder = embedder_for(settings.embedding)
    assistants: dict[str, Assistant] = {}
    rows = []
    for n, item in enumerate(items, start=1):
        if progress:
            progress(f"{item['id']} ({n}/{len(items)})")
        if item["corpus"] not in corpora:
            raise DatasetError(f"{path}: {item['id']} names corpus {item['corpus']!r}, not in {collection}")
        if item["corpus"] not in assistants:
            index_dir = corpus_index(corpora[item["corpus"]], settings, embedder)
            assistants[item["corpus"]] = Assistant(index_dir, backend, embedder=embedder, settings=settings)
        assistant = assistants[item["corpus"]]
        conversation = assistant.conversation()
        for turn in item["turns"]:
            conversation.ask(turn, k=k)
        rewrite = conversation.standalone(item["question"])  # with the backend's model, if it has one
        quotes = [e["quote"] for e in item["evidence"]]
        seen: dict[str, bool] = {}

        def found(query: str) -> bool:
            if query not in seen:
                seen[query] = any(covers(h.chunk.text, q) for h in assistant.retrieve(query, k) for q in quotes)
            return seen[query]

        grid = {}
        for value in OWN_TERMS_GRID:
            with _setting("MAX_OWN_TERMS", value), _setting("MIN_TOPIC_SIMILARITY", 9.0):
                other = conversation.standalone(item["question"], "extractive")  # the rules alone
            grid[str(value)] = {"rewritten": other.rewritten, "evidence_at_k": found(other.standalone)}
        topic = {}
        for value in TOPIC_GRID:
            with _setting("MIN_TOPIC_SIMILARITY", value):
                other = conversation.standalone(item["question"], "extractive")
            topic[str(value)] = {"rewritten": other.rewritten, "evidence_at_k": found(other.standalone)}

        ruled = conversation.standalone(item["question"], "extractive")
        answer = conversation.ask(item["question"], k=k)
        rows.append({
            "id": item["id"], "corpus": item["corpus"], "followup": bool(item["followup"]),
            "style": item.get("style", ""), "question": item["question"], "searched": rewrite.standalone,
            "reason": rewrite.reason, "rewritten": rewrite.rewritten,
            "evidence_at_k": found(rewrite.standalone), "evidence_at_k_as_asked": found(item["question"]),
            "searched_by_rules": ruled.standalone, "evidence_at_k_rules": found(ruled.standalone),
            "cited": any(covers(c.quote, q) or covers(q, c.quote) for c in answer.citations for q in quotes),
            "grid": grid, "topic": topic,
        })
    summary = summarise_followups(rows, k)
    summary.update({"split": split, "file": str(path), "backend": backend})
    from rag.followup import MAX_OWN_TERMS, MIN_TOPIC_SIMILARITY

    max_terms, grid = choose(rows, "grid", OWN_TERMS_GRID, 0)
    summary["own_terms_grid"] = {"best": max_terms, "shipped": MAX_OWN_TERMS, "rates": grid}
    min_sim, topic_grid = choose(rows, "topic", TOPIC_GRID, TOPIC_GRID[-1])
    summary["topic_grid"] = {"best": min_sim, "shipped": MIN_TOPIC_SIMILARITY, "rates": topic_grid}

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "results.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (out_dir / "report.md").write_text(report(summary), encoding="utf-8")
    return summary


def summarise_followups(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Rates over scored rows (see :func:`evaluate_followups`)."""
    def rate(rs: list[dict[str, Any]], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in rs) / len(rs), 4) if rs else None

    follow = [r for r in rows if r["followup"]]
    alone = [r for r in rows if not r["followup"]]
    return {
        "k": k,
        "followups": len(follow),
        "followups_rewritten": rate(follow, "rewritten"),
        "followups_evidence_at_k": rate(follow, "evidence_at_k"),
        "followups_evidence_at_k_as_asked": rate(follow, "evidence_at_k_as_asked"),
        "followups_evidence_at_k_rules": rate(follow, "evidence_at_k_rules"),
        "followups_cited": rate(follow, "cited"),
        "standalone": len(alone),
        "standalone_unchanged": None if not alone else round(1 - (rate(alone, "rewritten") or 0.0), 4),
        "standalone_evidence_at_k": rate(alone, "evidence_at_k"),
        "standalone_cited": rate(alone, "cited"),
    }


def report(summary: dict[str, Any]) -> str:
    """The summary as a short Markdown table."""
    s = summary
    lines = [f"# Follow-up questions: {s['split']} split ({s['followups']} follow-ups, "
             f"{s['standalone']} standalone; backend {s.get('backend', 'extractive')})", "",
             "| | rate |", "|---|---|",
             f"| follow-ups rewritten | {s['followups_rewritten']} |",
             f"| follow-ups: a top-{s['k']} passage holds the evidence (rewritten) | {s['followups_evidence_at_k']} |",
             f"| follow-ups: a top-{s['k']} passage holds the evidence (as asked) | "
             f"{s['followups_evidence_at_k_as_asked']} |",
             f"| follow-ups: a top-{s['k']} passage holds the evidence (rewritten by the rules alone) | "
             f"{s.get('followups_evidence_at_k_rules')} |",
             f"| follow-ups: the answer cites the evidence | {s['followups_cited']} |",
             f"| standalone questions left unchanged | {s['standalone_unchanged']} |",
             f"| standalone: a top-{s['k']} passage holds the evidence | {s['standalone_evidence_at_k']} |",
             "", "Content words of its own a question with a referring word may have and still be rewritten "
             f"(shipped: {s['own_terms_grid']['shipped']}; best on this split: {s['own_terms_grid']['best']}):", ""]
    lines += _grid_table(s["own_terms_grid"]["rates"])
    lines += ["", "Least similarity with the previous question for which a question that points back but names "
              f"more of its own is rewritten (shipped: {s['topic_grid']['shipped']}; best on this split: "
              f"{s['topic_grid']['best']}):", ""]
    lines += _grid_table(s["topic_grid"]["rates"])
    return "\n".join(lines) + "\n"


def _grid_table(rates: dict[str, Any]) -> list[str]:
    """A setting's grid as Markdown table lines."""
    return (["| value | standalone unchanged | follow-ups: evidence in top k |", "|---|---|---|"]
            + [f"| {v} | {r['standalone_unchanged']} | {r['followups_evidence_at_k']} |" for v, r in rates.items()])
