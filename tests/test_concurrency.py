"""Concurrent sessions and re-indexing while questions are answered.

Slow: the real app (``python app.py`` in a subprocess, tmp corpus and index) and eight
``gradio_client.Client`` instances in eight threads, each asking its own question at
the same moment: no errors, and each gets the answer to its own question.

In-process: an :class:`~rag.assistant.Assistant` answers questions in four threads in
a loop while the main thread re-indexes the folder twice (a file changed and a file
added, then another file added): no exception anywhere, every answer is valid and
drawn from one consistent store, and after the re-index the new files are cited.
Also: two uploads at once, and a reader that loads the index while a save is
between its two renames.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rag.store
from rag.assistant import Assistant
from rag.indexing import index_folder
from rag.prompts import NO_ANSWER
from rag.store import IndexStore
from rag.types import Answer

from reliability_helpers import AppProcess

# -- eight sessions at once through the real app ---------------------------------------------

#: file -> (document, question, the word the answer must contain)
TOPICS = {
    "velmora-dam.md": ("# Velmora Dam\n\nThe concrete wall of the Velmora Dam rises 212 metres above the Sarn river.\n",
                       "How tall is the concrete wall of the Velmora Dam?", "212"),
    "brenmoor-ferry.md": ("# Brenmoor Ferry\n\nA single crossing on the Brenmoor ferry takes 35 minutes.\n",
                          "How long does a single crossing on the Brenmoor ferry take?", "35 minutes"),
    "quillfeather.md": ("# Quillfeather Orchid\n\nBotanists counted 418 flowering quillfeather orchids in 2023.\n",
                        "How many flowering quillfeather orchids did botanists count in 2023?", "418"),
    "tarsk-bridge.md": ("# Tarsk Bridge\n\nThe Tarsk Bridge was repainted green in 2018 by the canal board.\n",
                        "What colour was the Tarsk Bridge repainted in 2018?", "green"),
    "ilsby-tramway.md": ("# Ilsby Tramway\n\nThe Ilsby tramway carried 9.8 million passengers in 2022.\n",
                         "How many passengers did the Ilsby tramway carry in 2022?", "9.8 million"),
    "pellam-library.md": ("# Pellam Library\n\nMembership of the Pellam public library costs 12 crowns a year.\n",
                          "How much does membership of the Pellam public library cost per year?", "12 crowns"),
    "ferrow-glacier.md": ("# Ferrow Glacier\n\nThe Ferrow glacier retreated 38 metres between 2020 and 2023.\n",
                          "How far did the Ferrow glacier retreat between 2020 and 2023?", "38 metres"),
    "glimmerton.md": ("# Glimmerton Council\n\nThe mayor of Glimmerton is Ada Morrow, elected in 2021.\n",
                      "Who is the mayor of Glimmerton?", "Ada Morrow"),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    base = tmp_path_factory.mktemp("concurrency-app")
    corpus = base / "corpus"
    corpus.mkdir()
    for name, (text, _, _) in TOPICS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    with AppProcess(base, corpus) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def _endpoint(client: object) -> tuple[str, list[str]]:
    """The api_name and parameter names of the chat handler in this gradio version."""
    info = client.view_api(return_format="dict", print_info=False)  # type: ignore[attr-defined]
    for name, endpoint in info["named_endpoints"].items():
        params = [p.get("parameter_name") or p["label"] for p in endpoint["parameters"]]
        if name.startswith("/respond") and "question" in params:
            return name, params
    raise AssertionError(f"no chat endpoint in {list(info['named_endpoints'])}")


def _text_of(message: dict[str, object]) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


@pytest.mark.slow
def test_eight_sessions_at_once_each_get_their_own_answer(app: AppProcess) -> None:
    from gradio_client import Client

    clients = [Client(app.url, verbose=False) for _ in TOPICS]
    api_name, params = _endpoint(clients[0])
    assert params == ["question", "backend", "k"], params
    barrier = threading.Barrier(len(TOPICS))
    results: dict[str, object] = {}
    errors: dict[str, BaseException] = {}

    def ask(client: Client, name: str) -> None:
        _, question, _ = TOPICS[name]
        try:
            barrier.wait(timeout=60)
            job = client.submit(question, "extractive", 5, api_name=api_name)
            results[name] = job.result(timeout=300)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[name] = exc

    threads = [threading.Thread(target=ask, args=(c, n)) for c, n in zip(clients, TOPICS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(400)
    elapsed = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "a session never got its answer"
    assert errors == {}, errors
    assert len(results) == len(TOPICS)
    for name, result in results.items():
        _, question, word = TOPICS[name]
        box, messages, sources, copy = result  # type: ignore[misc]
        assert box == ""
        assert [m["role"] for m in messages] == ["user", "assistant"]  # its own conversation only
        assert question in _text_of(messages[0])
        answer = _text_of(messages[1])
        assert "rag-error" not in answer and "rag-abstained" not in answer, answer
        assert word in answer, (name, answer)
        assert f'<div class="rag-file">{name}</div>' in sources, (name, sources[-300:])
        for other, (_, _, other_word) in TOPICS.items():
            if other != name:
                assert f">{other}<" not in sources  # no other session's sources
        assert word in copy and "Sources:" in copy and name not in copy.split("Sources:")[0]
    print(f"8 concurrent sessions answered in {elapsed:.1f}s, 0 errors")


# -- re-indexing while questions are answered -----------------------------------------------------

BEACON_V0 = ("# Skerry Rock Beacon\n\nThe beacon on Skerry Rock flashes red every four seconds. "
             "It was built by the harbour board.\n")
BEACON_V1 = ("# Skerry Rock Beacon\n\nThe beacon on Skerry Rock flashes blue every nine seconds since its refit. "
             "It was built by the harbour board.\n")
NEW_1 = ("# Hollin Quay Crane\n\nThe Hollin Quay crane lifts containers of up to 61 tonnes. "
         "It was delivered from Rotterdam.\n")
NEW_2 = ("# Marrow Fen Pumping Station\n\nThe Marrow Fen pumping station moves 14 cubic metres of water per second. "
         "It protects the low farmland.\n")
QUESTIONS = [
    ("How often does the beacon on Skerry Rock flash?", "skerry-beacon.md"),
    ("How tall is the concrete wall of the Velmora Dam?", "velmora-dam.md"),
    ("How heavy are the containers the Hollin Quay crane can lift?", "hollin-crane.md"),
    ("How much water does the Marrow Fen pumping station move per second?", "marrow-fen.md"),
    ("Who is the mayor of Glimmerton?", "glimmerton.md"),
]


def _valid(answer: Answer) -> None:
    if answer.abstained:
        assert answer.text == NO_ANSWER and answer.citations == []
        return
    by_id = {h.chunk.id: h.chunk for h in answer.passages}
    assert answer.citations
    for c in answer.citations:
        chunk = by_id[c.chunk_id]  # every citation points into this answer's own passages
        assert chunk.char_start <= c.char_start < c.char_end <= chunk.char_end
        assert chunk.text[c.char_start - chunk.char_start:c.char_end - chunk.char_start] == c.quote
        assert f"[{c.marker}]" in answer.text


def test_reindexing_while_four_threads_ask(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("velmora-dam.md", "glimmerton.md"):
        (folder / name).write_text(TOPICS[name][0], encoding="utf-8")
    (folder / "skerry-beacon.md").write_text(BEACON_V0, encoding="utf-8")
    index_dir = tmp_path / "index"
    index_folder(folder, index_dir, embedder, show_progress=False)
    assistant = Assistant(index_dir, "extractive", embedder=embedder)

    versions: list[set[str]] = [{c.id for c in assistant.retriever.store.chunks}]
    stop = threading.Event()
    records: list[tuple[int, str, Answer]] = []  # (versions known when asked, question, answer)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        i = offset
        while not stop.is_set():
            question, _ = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            try:
                known = len(versions)
                answer = assistant.ask(question)
                with lock:
                    records.append((known, question, answer))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        (folder / "skerry-beacon.md").write_text(BEACON_V1, encoding="utf-8")
        (folder / "hollin-crane.md").write_text(NEW_1, encoding="utf-8")
        first = assistant.index(folder)
        versions.append({c.id for c in assistant.retriever.store.chunks})
        time.sleep(1.0)
        (folder / "marrow-fen.md").write_text(NEW_2, encoding="utf-8")
        second = assistant.index(folder)
        versions.append({c.id for c in assistant.retriever.store.chunks})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # let every thread finish some questions on the last store
            with lock:
                late_questions = [q for known, q, _ in records if known == 3]
                if len(late_questions) >= 8 and {q for q, _ in QUESTIONS} <= set(late_questions):
                    break
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [], errors
    assert first.added == ["hollin-crane.md"] and first.updated == ["skerry-beacon.md"]
    assert second.added == ["marrow-fen.md"]
    assert versions[0] != versions[1] != versions[2]
    assert len(records) >= 20

    for _, question, answer in records:
        _valid(answer)
        ids = {h.chunk.id for h in answer.passages}
        assert any(ids <= v for v in versions), f"passages of {question!r} mix index versions"

    # After each re-index, the new files are answered and cited (asked after the switch).
    late = [(q, a) for known, q, a in records if known == 3]
    assert late
    for question, expected_file in QUESTIONS:
        answers = [a for q, a in late if q == question]
        for answer in answers:
            assert not answer.abstained, (question, answer.notice)
            assert {c.source for c in answer.citations} == {expected_file}, (question, answer.text)
    assert {q for q, _ in late} == {q for q, _ in QUESTIONS}
    beacon = [a for q, a in late if q == QUESTIONS[0][0]]
    assert all("blue" in a.text and "red" not in a.text for a in beacon)
    print(f"{len(records)} answers in 4 threads across 2 re-indexes, 0 errors")


def test_two_uploads_at_once_are_both_indexed(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "glimmerton.md").write_text(TOPICS["glimmerton.md"][0], encoding="utf-8")
    index_folder(folder, tmp_path / "index", embedder, show_progress=False)
    assistant = Assistant(tmp_path / "index", "extractive", embedder=embedder)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "a.md").write_text(NEW_1, encoding="utf-8")
    (uploads / "b.md").write_text(NEW_2, encoding="utf-8")
    errors: list[BaseException] = []

    def add(name: str) -> None:
        try:
            assistant.add_files([uploads / name], corpus_dir=folder)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in ("a.md", "b.md")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert errors == []
    assert {d["source"] for d in assistant.documents()} == {"glimmerton.md", "a.md", "b.md"}
    answer = assistant.ask(QUESTIONS[3][0])
    assert [c.source for c in answer.citations] == ["b.md"]
    assert sorted(p.name for p in folder.iterdir()) == ["a.md", "b.md", "glimmerton.md"]


def test_loading_during_a_save_does_not_break_the_save(tmp_path: Path, embedder,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("velmora-dam.md", "glimmerton.md"):
        (folder / name).write_text(TOPICS[name][0], encoding="utf-8")
    index_dir = tmp_path / "index"
    index_folder(folder, index_dir, embedder, show_progress=False)
    old = IndexStore.load(index_dir)
    new = IndexStore.build(old.chunks[:1], old.vectors([0]), old.manifest)

    between = threading.Event()
    resume = threading.Event()
    real_rename = os.rename
    writer_renames: list[str] = []

    def rename(src, dst):  # noqa: ANN001, ANN202
        real_rename(src, dst)
        if threading.current_thread().name == "writer":
            writer_renames.append(str(dst))
            if len(writer_renames) == 1:  # index -> .index.old-*: pause before tmp -> index
                between.set()
                resume.wait(30)

    monkeypatch.setattr(rag.store.os, "rename", rename)
    errors: list[BaseException] = []

    def save() -> None:
        try:
            new.save(index_dir)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writer = threading.Thread(target=save, name="writer")
    writer.start()
    assert between.wait(30)
    reader_error: BaseException | None = None
    try:
        seen = IndexStore.load(index_dir)  # a reader arrives in the instant between the renames
        assert len(seen.chunks) in (len(old.chunks), 1)
    except BaseException as exc:  # noqa: BLE001
        reader_error = exc
    finally:
        resume.set()
        writer.join(30)
    monkeypatch.undo()
    assert reader_error is None, reader_error
    assert errors == [], errors
    assert len(IndexStore.load(index_dir).chunks) == 1  # the save that was under way landed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".index.tmp-", ".index.old-"))]
