"""The evaluation harness end to end: ``rag eval``, ``evaluate()``, dataset checks and the regression gate.

Everything runs on the real bundled embedder over the seeds index that conftest builds
in a tmp dir (only the run_one unit tests use a fake assistant).  The two full runs of
eval/dev.jsonl, one through ``rag eval`` and one through ``evaluate()``, are module
fixtures shared by the tests that need them; the CLI run works in the background while
the tests in between run, so the gate test comes first and the CLI tests last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag import generators
from rag.assistant import Assistant
from rag.config import RetrievalSettings, Settings
from rag.evaluation import DatasetError, QAItem, dataset_errors, evaluate, load_qa, run_one
from rag.generators import GenerationRequest
from rag.indexing import IndexReport
from rag.sentences import sentence_spans
from rag.types import Answer, Chunk, Citation, Hit

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "eval" / "dev.jsonl"
SEEDS = ROOT / "seeds"
CDAI = "cdai-defence-industrial-base-cooperation-2025.txt"

#: Keys every results.jsonl row has (rows may carry more, e.g. backend_used and checks).
RESULT_KEYS = {"id", "question", "config", "retrieved", "retrieved_ids", "answer", "cited", "cited_ids",
               "quotes", "abstained", "latency_s"}
#: report.md labels of the overall table, in order, and the summary key of each.
REPORT_LABELS = {
    "Retrieval recall@1": "recall@1", "recall@3": "recall@3", "recall@5": "recall@5", "recall@10": "recall@10",
    "MRR@10": "mrr@10", "Citation precision": "citation_precision", "Citation recall": "citation_recall",
    "Support rate": "support_rate", "Answer token-F1": "answer_f1",
    "Cited page holds the evidence": "page_accuracy", "Abstention (unanswerable)": "abstention_rate", "False abstention (answerable)": "false_abstention_rate",
    "Latency p50 (s)": "latency_p50_s", "Latency p95 (s)": "latency_p95_s",
}
LATENCY_KEYS = {"latency_p50_s", "latency_p95_s"}

# -- the regression gate ------------------------------------------------------------
# Measured on eval/dev.jsonl, extractive backend, k = 5, weighted hybrid fusion, seeds index
# (72 questions: 56 answerable, 16 unanswerable), with the learned models of
# rag/models/answering.json (the dev set is part of their tune split, so these are
# in-sample figures; the out-of-sample gate is tests/test_collection_gate.py):
#   recall@1 0.705  recall@3 0.955  recall@5 0.982  recall@10 0.982  MRR@10 0.879
#   citation precision 0.833  citation recall 0.658  support rate 1.000  answer F1 0.275
#   abstention 0.688 (11/16)  false abstention 0.125 (7/56)
# The hand-set rules these models replaced scored abstention 0.875 here and 7 of 12 on
# unseen seeds questions: they had been fitted to these 16 questions one by one.
# Floors sit 0.03 under those rates, rounded down; false abstention and latency are ceilings.
GATE_MIN = {
    "recall@1": 0.67,
    "recall@3": 0.92,
    "recall@5": 0.95,
    "recall@10": 0.95,
    "mrr@10": 0.84,
    "citation_precision": 0.80,
    "citation_recall": 0.62,
    "support_rate": 0.97,
    "answer_f1": 0.24,
    "abstention_rate": 0.65,
}
GATE_MAX = {
    "false_abstention_rate": 0.16,
    # Over 5x the p95 of an unloaded run (1.9 s); scaled up by the machine's load (below),
    # since wall-clock time on a shared machine is noisy.  It still catches gross slowdowns,
    # such as a model loaded for every question.
    "latency_p95_s": 10.0,
}


def _load_factor() -> float:
    """How oversubscribed the CPUs are (1-minute load average per CPU, at least 1)."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


# -- helpers ---------------------------------------------------------------------------

def _clean_env() -> dict[str, str]:
    """The environment without the caller's RAG_* settings, offline, no progress bars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_SHOW_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _default_settings(index_dir: Path, corpus_dir: Path) -> Settings:
    """Default settings (no RAG_* overrides from the environment) over the given folders."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("RAG_")]:
            mp.delenv(key)
        settings = Settings()
    settings.paths.index_dir = index_dir
    settings.paths.corpus_dir = corpus_dir
    return settings


def _assistant(seed_index: tuple[Path, Path, IndexReport], embedder: Any) -> Assistant:
    _, index_dir, _ = seed_index
    return Assistant(index_dir, "extractive", embedder=embedder, settings=_default_settings(index_dir, SEEDS))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _table(lines: list[str], start: int) -> list[list[str]]:
    """The body rows of the markdown table whose header line is ``lines[start]``."""
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _parse_report(md: str) -> dict[str, Any]:
    """report.md as {"configs": [...], "overall": {label: [cells]}, "by_kind": {config: {kind: [cells]}}}."""
    lines = md.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| metric |"))
    configs = [c.strip() for c in lines[head].strip().strip("|").split("|")][1:]
    overall = {row[0]: row[1:] for row in _table(lines, head)}
    by_kind: dict[str, dict[str, list[str]]] = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"## (.+) by kind", line)
        if m:
            header = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("| kind |"))
            by_kind[m.group(1)] = {row[0]: row[1:] for row in _table(lines, header)}
    return {"configs": configs, "overall": overall, "by_kind": by_kind}


def _check_report_matches(md: str, summary: dict[str, Any]) -> None:
    """Every number of report.md equals the summary's, rounded to 3 decimals."""
    report = _parse_report(md)
    names = list(summary["configs"])
    assert report["configs"] == names
    assert list(report["overall"]) == list(REPORT_LABELS)
    for label, key in REPORT_LABELS.items():
        values = [summary["configs"][n]["overall"][key] for n in names]
        expected = ["n/a" if v is None else f"{v:.3f}" for v in values]
        assert report["overall"][label] == expected, f"report row {label!r}"
    assert list(report["by_kind"]) == names
    for n in names:
        kinds = summary["configs"][n]["by_kind"]
        assert list(report["by_kind"][n]) == list(kinds)
        for kind, m in kinds.items():
            abst = m["abstention_rate"] if kind == "unanswerable" else m["false_abstention_rate"]
            expected = [str(m["questions"])] + [f"{v:.3f}" for v in (
                m["recall@5"], m["mrr@10"], m["citation_precision"], m["citation_recall"], m["answer_f1"], abst)]
            assert report["by_kind"][n][kind] == expected, f"{n} by kind, row {kind!r}"


def _without_latency(configs: dict[str, Any]) -> dict[str, Any]:
    def strip(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in LATENCY_KEYS}
    return {name: {"overall": strip(c["overall"]), "by_kind": {k: strip(m) for k, m in c["by_kind"].items()}}
            for name, c in configs.items()}


def _write_qa(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


def _dev_items(*ids: str) -> list[dict[str, Any]]:
    by_id = {d["id"]: d for d in map(json.loads, DEV.read_text(encoding="utf-8").splitlines()) if d}
    return [by_id[i] for i in ids]


# -- the CLI runs and the in-process run of the dev set ------------------------------------------
# Both ``rag eval`` runs start in the background as soon as the first test needs one;
# evaluate() and the quick tests run in this process meanwhile (they share nothing but
# the read-only index), which roughly halves the module's wall time.

CliRun = tuple[subprocess.Popen[bytes], Path]
MALFORMED_LINE_2 = '{"id": "g2", "question": "q?"\n'


@pytest.fixture(scope="module")
def background_cli(seed_index: tuple[Path, Path, IndexReport],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CliRun]]:
    """Started, not finished: "dev" is ``rag eval eval/dev.jsonl --out <tmp> --index-dir <tmp seeds
    index>``; "malformed" is the same on a QA file whose line 2 is not JSON."""
    _, index_dir, _ = seed_index
    env = _clean_env()
    env["OMP_NUM_THREADS"] = "1"     # leave the other CPU to this process
    base = tmp_path_factory.mktemp("cli-eval")
    bad = base / "malformed.jsonl"
    bad.write_text(GOOD + "\n" + MALFORMED_LINE_2, encoding="utf-8")
    procs = {}
    for name, qa in (("dev", "eval/dev.jsonl"), ("malformed", str(bad))):
        (base / name).mkdir()
        with open(base / name / "stdout.txt", "wb") as out, open(base / name / "stderr.txt", "wb") as err:
            procs[name] = (subprocess.Popen([sys.executable, "-m", "rag.cli", "eval", qa, "--out",
                                             str(base / name / "out"), "--index-dir", str(index_dir)],
                                            cwd=ROOT, env=env, stdout=out, stderr=err), base / name)
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finished(run: CliRun) -> tuple[subprocess.CompletedProcess[str], Path]:
    """(the completed process with its stdout and stderr, its --out folder)."""
    proc, base = run
    proc.wait(timeout=900)
    done = subprocess.CompletedProcess(proc.args, proc.returncode,
                                       (base / "stdout.txt").read_text(encoding="utf-8"),
                                       (base / "stderr.txt").read_text(encoding="utf-8"))
    return done, base / "out"


@pytest.fixture(scope="module")
def cli_dev_run(background_cli: dict[str, CliRun]) -> tuple[subprocess.CompletedProcess[str], Path]:
    return _finished(background_cli["dev"])


@pytest.fixture(scope="module")
def api_dev_run(background_cli: dict[str, Any], seed_index: tuple[Path, Path, IndexReport],
                embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """``evaluate()`` on eval/dev.jsonl with the default configuration (extractive, default k).

    Asks for ``background_cli`` only so that the CLI runs work while this one does.
    """
    out = tmp_path_factory.mktemp("api-eval") / "out"
    summary = evaluate(DEV, _assistant(seed_index, embedder), out_dir=out)
    print("\ndev-set summary (extractive, default k):\n"
          + json.dumps(summary["configs"]["extractive"]["overall"], indent=1))
    return summary, out


# -- (4) the regression gate ---------------------------------------------------------------------

@pytest.mark.slow
def test_regression_gate(api_dev_run: tuple[dict[str, Any], Path]) -> None:
    summary, _ = api_dev_run
    assert summary["dataset_errors"] == [], "the dev set has evidence errors; fix eval/dev.jsonl first"
    m = summary["configs"]["extractive"]["overall"]
    assert m["questions"] == len(load_qa(DEV))
    failures = [f"{key} = {m[key]:.3f} fell below its threshold {floor}"
                for key, floor in GATE_MIN.items() if m[key] < floor]
    ceilings = dict(GATE_MAX)
    factor = _load_factor()
    ceilings["latency_p95_s"] = round(GATE_MAX["latency_p95_s"] * factor, 1)
    failures += [f"{key} = {m[key]:.3f} rose above its threshold {ceiling}"
                 + (f" ({GATE_MAX[key]} x load factor {factor:.1f})" if key.startswith("latency") else "")
                 for key, ceiling in ceilings.items() if m[key] > ceiling]
    assert not failures, "dev-set regression:\n" + "\n".join(failures)


# -- (b) evidence that is not in the corpus ---------------------------------------------------

def test_dataset_errors_checks_quotes_against_loaded_documents(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The board met in nineteen forty in Ogdensburg.\n", encoding="utf-8")
    items = load_qa(_write_qa(tmp_path / "qa.jsonl", [
        {"id": "ok", "question": "q?", "answer": "x", "answerable": True, "kind": "factoid",
         "evidence": [{"doc": "a.txt", "quote": "the board met in nineteen forty"}]},
        # 2 of the 3 four-grams occur: still covered (curly quotes, case do not matter either).
        {"id": "half", "question": "q?", "answer": "x", "answerable": True, "kind": "factoid",
         "evidence": [{"doc": "a.txt", "quote": "THE ‘board’ met in nineteen"}]},
        {"id": "bad", "question": "q?", "answer": "x", "answerable": True, "kind": "factoid",
         "evidence": [{"doc": "a.txt", "quote": "the board never met at all"}]},
        {"id": "gone", "question": "q?", "answer": "x", "answerable": True, "kind": "factoid",
         "evidence": [{"doc": "missing.txt", "quote": "the board met"}]},
        {"id": "none", "question": "q?", "answer": None, "answerable": False, "kind": "unanswerable",
         "evidence": []},
    ]))
    assert dataset_errors(items, corpus) == [
        {"id": "bad", "doc": "a.txt", "quote": "the board never met at all", "error": "quote not in document"},
        {"id": "gone", "doc": "missing.txt", "quote": "the board met", "error": "document not in corpus"},
    ]


def test_quote_not_in_corpus_is_reported_and_not_scored(tmp_path: Path, seed_index: tuple[Path, Path, IndexReport],
                                                        embedder: Any) -> None:
    bad_quote = "The roundtable agreed that submarines should be built on the Moon by 2030."
    qa = _write_qa(tmp_path / "qa.jsonl", _dev_items("q01", "q04") + [
        {"id": "bad1", "question": "Where will submarines be built?", "answer": "On the Moon.", "answerable": True,
         "kind": "factoid", "evidence": [{"doc": CDAI, "quote": bad_quote}]},
    ])
    messages: list[str] = []
    summary = evaluate(qa, _assistant(seed_index, embedder), out_dir=tmp_path / "out", corpus_dir=SEEDS,
                       progress=messages.append)
    assert summary["dataset_errors"] == [
        {"id": "bad1", "doc": CDAI, "quote": bad_quote, "error": "quote not in document"}]
    overall = summary["configs"]["extractive"]["overall"]
    assert (overall["questions"], overall["answerable"], overall["unanswerable"]) == (2, 1, 1)
    assert messages == ["[extractive] 1/2 q01", "[extractive] 2/2 q04"]
    rows = _read_rows(tmp_path / "out" / "results.jsonl")
    assert [r["id"] for r in rows] == ["q01", "q04"]
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    section = report.split("## Dataset errors", 1)[1]
    assert f"- bad1 ({CDAI}): quote not in document" in section
    assert "None: every evidence quote" not in section
    _check_report_matches(report, summary)


# -- run_one: the results row of one question -----------------------------------------------------

def _chunk(n: int) -> Chunk:
    text = f"Passage {n} says that the board number {n} met in Ottawa."
    return Chunk(f"doc-{n:04d}", "doc", "report.txt", "Report", text, 100 * n, 100 * n + len(text), 1, 1)


class FakeAssistant:
    """Just what run_one uses: ask() and retrieve(), with canned passages and citations.

    Like the real retriever, the ranking may depend on how many passages are asked for
    (the candidate pool and the score normalisation grow with k).
    """

    backend = "extractive"

    def __init__(self, ranking_depends_on_k: bool = False) -> None:
        self.chunks = [_chunk(n) for n in range(12)]
        self.ranking_depends_on_k = ranking_depends_on_k

    def retrieve(self, question: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        order = list(range(12))
        if self.ranking_depends_on_k and (k or 5) > 5:
            order[0], order[1] = order[1], order[0]
        return [Hit(self.chunks[i], 1.0 - r / 20, r + 1) for r, i in enumerate(order[:k or 5])]

    def ask(self, question: str, k: int | None = None, backend: str | None = None) -> Answer:
        hits = self.retrieve(question, k)
        c0, c2 = hits[0].chunk, hits[2].chunk
        cites = [Citation(1, c0.id, c0.source, c0.title, 1, c0.char_start, c0.char_start + 20, c0.text[:20], 1.0),
                 Citation(1, c0.id, c0.source, c0.title, 1, c0.char_start + 21, c0.char_end, c0.text[21:], 0.9),
                 Citation(2, c2.id, c2.source, c2.title, 1, c2.char_start, c2.char_end, c2.text, 0.8)]
        return Answer(question, "It met in Ottawa [1]. Twice [1]. Board two [2].", cites, hits, False,
                      backend or self.backend, {}, "", {"sentences": 3, "supported": 3, "recited": 0})


def test_run_one_builds_the_results_row() -> None:
    item = QAItem("x1", "Where did the board meet?", "Ottawa", True, "factoid",
                  [{"doc": "report.txt", "quote": "the board number 0 met in Ottawa"}])
    fake = FakeAssistant()
    row = run_one(fake, item, "extractive", 5)
    assert set(row) >= RESULT_KEYS
    assert (row["id"], row["question"], row["config"], row["backend_used"]) == \
        ("x1", "Where did the board meet?", "extractive", "extractive")
    assert row["retrieved_ids"] == [c.id for c in fake.chunks[:10]]       # max(10, k) passages for recall@10
    assert row["retrieved"] == [c.text for c in fake.chunks[:10]]
    assert row["cited_ids"] == ["doc-0000", "doc-0002"]                    # one entry per cited passage
    assert row["cited"] == [fake.chunks[0].text, fake.chunks[2].text]
    assert len(row["quotes"]) == 3                                         # every citation's quote
    assert row["answer"] == "It met in Ottawa [1]. Twice [1]. Board two [2]."
    assert row["abstained"] is False
    assert row["checks"] == {"sentences": 3, "supported": 3, "recited": 0}
    assert isinstance(row["latency_s"], float) and row["latency_s"] >= 0
    assert run_one(fake, item, "extractive", 12)["retrieved_ids"] == [c.id for c in fake.chunks]


def test_recall_is_measured_on_the_passages_the_answer_saw() -> None:
    fake = FakeAssistant(ranking_depends_on_k=True)
    item = QAItem("x1", "Where did the board meet?", "Ottawa", True, "factoid", [])
    row = run_one(fake, item, "extractive", 5)
    seen = [h.chunk.id for h in fake.ask(item.question, k=5).passages]
    assert row["retrieved_ids"][:5] == seen


# -- (c) malformed QA files ----------------------------------------------------------------

GOOD = ('{"id": "g1", "question": "Which rule?", "answer": "Chatham House.", "answerable": true, '
        '"kind": "factoid", "evidence": []}')


@pytest.mark.parametrize("bad,why", [
    ('{"id": "x", "question": "q?", "answerable": true', "JSONDecodeError"),     # cut-off JSON
    ("not json at all", "JSONDecodeError"),
    ('{"question": "q?", "answerable": true}', "KeyError: 'id'"),
    ('{"id": "x", "answerable": false}', "KeyError: 'question'"),
    ('{"id": "x", "question": "q?"}', "KeyError: 'answerable'"),
    ('[1, 2, 3]', "TypeError"),
    ('null', "TypeError"),
])
def test_malformed_line_names_the_line(tmp_path: Path, bad: str, why: str) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(GOOD + "\n\n" + bad + "\n", encoding="utf-8")   # the bad item is on line 3
    with pytest.raises(DatasetError) as info:
        load_qa(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: not a QA item (")
    assert why in message


def test_duplicate_ids_and_empty_files_are_dataset_errors(tmp_path: Path) -> None:
    path = _write_qa(tmp_path / "dup.jsonl", [json.loads(GOOD), json.loads(GOOD)])
    with pytest.raises(DatasetError, match=re.escape(f"{path}:2: duplicate id 'g1'")):
        load_qa(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no questions"):
        load_qa(empty)


def test_load_qa_defaults(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": 7, "question": "Why?", "answerable": false}\n', encoding="utf-8")
    [item] = load_qa(path)
    assert (item.id, item.answer, item.answerable, item.kind, item.evidence) == ("7", None, False, "unknown", [])


def test_evidence_items_must_be_objects(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "x", "question": "q?", "answer": "a", "answerable": true, "kind": "factoid", '
                    '"evidence": ["a bare quote"]}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=re.escape(f"{path}:1:")):
        dataset_errors(load_qa(path), SEEDS)


def test_answerable_must_be_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "x", "question": "q?", "answer": null, "answerable": "false", "kind": "unanswerable", '
                    '"evidence": []}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=re.escape(f"{path}:1:")):
        load_qa(path)


@pytest.mark.slow
def test_cli_malformed_line_is_one_error_line(background_cli: dict[str, Any]) -> None:
    proc, out = _finished(background_cli["malformed"])
    qa = out.parent.parent / "malformed.jsonl"
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in proc.stderr.splitlines() if line.strip()], proc.stderr
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {qa}:2: not a QA item (JSONDecodeError")
    assert not out.exists()


# -- (e) two configurations in one run -----------------------------------------------------------

class FirstSentence:
    """A fake backend: the first sentence of passage 1, cited [1]."""

    name = "first-sentence"

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = request.hits[0].chunk.text
        start, end = sentence_spans(text)[0]
        yield f"{text[start:end]} [1]"


@pytest.mark.slow
def test_two_configurations_side_by_side(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         seed_index: tuple[Path, Path, IndexReport], embedder: Any) -> None:
    monkeypatch.setitem(generators.REGISTRY, "first-sentence", lambda llm, paths: FirstSentence())
    ids = ("q01", "q02", "q03", "q04", "q05", "q07", "q10", "q11")    # five kinds, answerable and not
    qa = _write_qa(tmp_path / "qa.jsonl", _dev_items(*ids))
    out = tmp_path / "out"
    summary = evaluate(qa, _assistant(seed_index, embedder), backends=["extractive", "first-sentence"],
                       out_dir=out)
    assert list(summary["configs"]) == ["extractive", "first-sentence"]
    ext, first = (summary["configs"][n] for n in ("extractive", "first-sentence"))
    assert ext["overall"]["questions"] == first["overall"]["questions"] == len(ids)
    assert set(ext["by_kind"]) == set(first["by_kind"]) == {d["kind"] for d in _dev_items(*ids)}
    # Retrieval does not depend on the backend.
    for key in ("recall@1", "recall@3", "recall@5", "recall@10", "mrr@10"):
        assert ext["overall"][key] == first["overall"][key], key

    rows = _read_rows(out / "results.jsonl")
    assert [r["config"] for r in rows] == ["extractive"] * len(ids) + ["first-sentence"] * len(ids)
    by_config = {(r["config"], r["id"]): r for r in rows}
    answered = 0
    for qid in ids:
        e, f = by_config["extractive", qid], by_config["first-sentence", qid]
        assert e["retrieved_ids"] == f["retrieved_ids"]
        if e["abstained"] and not e["checks"]:
            # Abstained before generation: no backend is asked, so both abstain.
            assert f["abstained"] and not f["checks"], qid
        if not f["abstained"] and f["backend_used"] == "extractive":
            # The first sentence could not be verified (a heading, a fragment): verified quotes instead.
            assert f["checks"]["supported"] == 0, qid
        elif not f["abstained"]:
            answered += 1
            assert f["backend_used"] == "first-sentence"
            assert f["answer"].endswith("[1]")
            # The one citation is the first sentence of the passage it cites.
            [quote], [passage] = f["quotes"], f["cited"]
            assert quote == f["answer"][:-len(" [1]")]
            start, end = sentence_spans(passage)[0]
            assert passage[start:end] == quote, qid
            assert f["cited_ids"][0] in f["retrieved_ids"][:summary["k"]]
    assert answered >= 3

    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| metric | extractive | first-sentence |" in report
    assert "## extractive by kind" in report and "## first-sentence by kind" in report
    _check_report_matches(report, summary)


# -- (a) the CLI writes results, summary and report ------------------------------------------

@pytest.mark.slow
def test_cli_eval_writes_results_summary_and_report(cli_dev_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = cli_dev_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name for p in out.iterdir()} >= {"results.jsonl", "summary.json", "report.md"}
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.strip() in proc.stdout                   # the report is printed too
    assert f"wrote {out / 'results.jsonl'}" in proc.stdout

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["k"] == RetrievalSettings().k                              # the default k
    assert summary["dataset_errors"] == []
    assert list(summary["configs"]) == ["extractive"]
    overall = summary["configs"]["extractive"]["overall"]
    questions = load_qa(DEV)
    assert overall["questions"] == len(questions)
    assert overall["answerable"] == sum(q.answerable for q in questions)

    rows = _read_rows(out / "results.jsonl")
    assert [r["id"] for r in rows] == [q.id for q in questions]            # one line per question, in order
    keys = set(rows[0])
    assert keys >= RESULT_KEYS, f"missing keys: {sorted(RESULT_KEYS - keys)}"
    k = summary["k"]
    for r, q in zip(rows, questions):
        assert set(r) == keys, f"{r['id']}: keys differ from the first row's"
        assert r["question"] == q.question and r["config"] == "extractive"
        assert isinstance(r["answer"], str) and r["answer"]
        assert isinstance(r["abstained"], bool)
        assert isinstance(r["latency_s"], float) and 0 <= r["latency_s"] < 120
        assert len(r["retrieved"]) == len(r["retrieved_ids"]) == max(10, k)
        assert all(isinstance(t, str) and t for t in r["retrieved"])
        assert len(set(r["retrieved_ids"])) == len(r["retrieved_ids"])
        assert len(r["cited"]) == len(r["cited_ids"]) == len(set(r["cited_ids"]))
        # The answer saw the first k passages: it can only cite those.
        assert set(r["cited_ids"]) <= set(r["retrieved_ids"][:k]), r["id"]
        for cid, text in zip(r["cited_ids"], r["cited"]):
            assert text == r["retrieved"][r["retrieved_ids"].index(cid)]
        if r["abstained"]:
            assert r["cited"] == [] and r["quotes"] == []
        else:
            assert r["cited"] and r["quotes"] and re.search(r"\[\d+\]", r["answer"])
            assert all(any(qt in text for text in r["cited"]) for qt in r["quotes"])


@pytest.mark.slow
def test_cli_report_numbers_match_summary(cli_dev_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, out = cli_dev_run
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    report = (out / "report.md").read_text(encoding="utf-8")
    _check_report_matches(report, summary)
    assert "None: every evidence quote occurs in its document." in report
    assert f"k = {summary['k']} passages per question" in report


# -- (d) evaluate() gives the CLI's numbers --------------------------------------------------

@pytest.mark.slow
def test_evaluate_api_matches_cli(cli_dev_run: tuple[subprocess.CompletedProcess[str], Path],
                                  api_dev_run: tuple[dict[str, Any], Path]) -> None:
    proc, cli_out = cli_dev_run
    assert proc.returncode == 0, proc.stderr
    cli = json.loads((cli_out / "summary.json").read_text(encoding="utf-8"))
    api, api_out = api_dev_run
    assert api["k"] == cli["k"]
    assert api["dataset_errors"] == cli["dataset_errors"]
    # Every number but wall-clock latency is deterministic.
    assert _without_latency(api["configs"]) == _without_latency(cli["configs"])
    cli_rows = _read_rows(cli_out / "results.jsonl")
    api_rows = _read_rows(api_out / "results.jsonl")
    assert [{k: v for k, v in r.items() if k != "latency_s"} for r in api_rows] == \
        [{k: v for k, v in r.items() if k != "latency_s"} for r in cli_rows]
    # evaluate() returns what it writes.
    assert json.loads((api_out / "summary.json").read_text(encoding="utf-8")) == api
    _check_report_matches((api_out / "report.md").read_text(encoding="utf-8"), api)
