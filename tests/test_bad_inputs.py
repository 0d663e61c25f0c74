"""Bad inputs get a clear error, never a traceback, and never cost what is already indexed.

Questions: empty, whitespace-only and 100,000 characters (library and ``python -m rag.cli ask``).
Files: each bad file sits in a folder next to one good file and is indexed with
``rag index FOLDER --index-dir X`` over a previously built index at X:

- without ``--strict``: exit 0, the bad file listed as skipped with a reason naming the problem;
- with ``--strict``: one ``error:`` line on stderr, non-zero exit, X untouched;
- afterwards the index at X loads and answers the same question identically.

Folders: an empty folder, a symlink loop, a file deleted while indexing runs, a named pipe.
A foreign index (other model, dim or format version) is refused by ``rag search``.

The CLI is driven in-process through Typer's runner (the embedding model loads once);
the question cases and one file case also run ``python -m rag.cli`` as a real process.
The module prints the tally of bad inputs tried and clear errors given.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.assistant import Assistant, check_question
from rag.cli import app
from rag.errors import QuestionError
from rag.indexing import index_folder
from rag.retrieval import Retriever
from rag.store import FORMAT_VERSION, MANIFEST, IndexStore

ROOT = Path(__file__).resolve().parent.parent

GOOD_NAME = "zorblat-treaty.txt"
GOOD_TEXT = (
    "The Zorblat Treaty\n\n"
    "The Zorblat treaty was signed in the harbour town of Qarvon in 1987 by seven delegations. "
    "It set yearly quotas on the export of peat moss from the northern islands. "
    "The treaty created a joint commission that meets every spring in Qarvon.\n\n"
    "The commission publishes a report on moss exports each autumn. "
    "Fines for exceeding a quota were raised in 2004 to forty thousand crowns."
)
QUESTION = "In which town was the Zorblat treaty signed?"

#: name of each bad input -> True once it got a clear error (filled in by the tests).
TALLY: dict[str, bool] = {}


def _tally(name: str, clear: bool = True) -> None:
    TALLY[name] = clear


@pytest.fixture(scope="module", autouse=True)
def _print_tally(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    tried = len(TALLY)
    clear = sum(TALLY.values())
    unclear = sorted(k for k, v in TALLY.items() if not v)
    line = f"bad inputs: {tried} tried, {clear} got a clear error" + (
        f"; not clear: {', '.join(unclear)}" if unclear else "")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}")
    else:  # pragma: no cover
        print(line)


# -- shared setup --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, embedder) -> tuple[Path, Path]:
    """(folder with the good file, an index built from it), both read only for tests."""
    root = tmp_path_factory.mktemp("bad-inputs")
    folder = root / "docs"
    folder.mkdir()
    (folder / GOOD_NAME).write_text(GOOD_TEXT, encoding="utf-8")
    index_folder(folder, root / "index", embedder, show_progress=False)
    return folder, root / "index"


def _fingerprint(index_dir: Path, embedder) -> tuple[object, ...]:
    """What a user gets from the index: the answer, its citations, the ranked passages."""
    assistant = Assistant(index_dir, "extractive", embedder=embedder)
    answer = assistant.ask(QUESTION)
    hits = Retriever(IndexStore.load(index_dir), embedder).search(QUESTION, 5)
    return (answer.text, answer.abstained,
            [(c.chunk_id, c.char_start, c.char_end, c.quote) for c in answer.citations],
            [(h.chunk.id, round(h.score, 6)) for h in hits])


@pytest.fixture(scope="module")
def expected(base: tuple[Path, Path], embedder) -> tuple[object, ...]:
    fp = _fingerprint(base[1], embedder)
    assert "Qarvon" in str(fp[0]) and not fp[1]  # the good file really answers the question
    return fp


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workspace(tmp_path: Path, base: tuple[Path, Path]) -> tuple[Path, Path]:
    """A fresh copy of the good folder and of its index, for one test."""
    folder = tmp_path / "docs"
    shutil.copytree(base[0], folder)
    index_dir = tmp_path / "index"
    shutil.copytree(base[1], index_dir)
    return folder, index_dir


runner = CliRunner()


def _cli(*args: str) -> tuple[int, str, str, BaseException | None]:
    """Run ``rag ARGS`` in-process: (exit code, stdout, stderr, unexpected exception)."""
    result = runner.invoke(app, list(args))
    exc = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, exc


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAG_SHOW_PROGRESS="0")


# -- questions -----------------------------------------------------------------------------

QUESTIONS = {"empty": "", "whitespace-only": "   \t\n  ", "100k-characters": ("why " * 25_000)[:-1] + "?"}


@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_bad_question_raises_question_error(kind: str, base: tuple[Path, Path], embedder) -> None:
    question = QUESTIONS[kind]
    assert len(QUESTIONS["100k-characters"]) == 100_000
    assistant = Assistant(base[1], "extractive", embedder=embedder)
    for call in (check_question, assistant.ask, assistant.retrieve, lambda q: list(assistant.stream(q))):
        with pytest.raises(QuestionError) as info:
            call(question)
        message = str(info.value)
        assert ("empty" in message) if kind != "100k-characters" else ("100,000" in message and "2,000" in message)
    _tally(f"question: {kind} (library)")


@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_bad_question_on_the_command_line(kind: str, base: tuple[Path, Path]) -> None:
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTIONS[kind], "--index-dir", str(base[1])],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    line = _one_error_line(proc.stderr)
    assert "Traceback" not in proc.stdout
    assert ("empty" in line) if kind != "100k-characters" else ("100,000" in line)
    assert len(line) < 300  # the question is not echoed back
    _tally(f"question: {kind} (CLI)")


# -- bad files -----------------------------------------------------------------------------


def _latin1(path: Path) -> None:
    path.write_bytes("Déjà vu in the café: the señor ordered crème brûlée.".encode("latin-1"))


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 16)


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _corrupt_pdf(path: Path) -> None:
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref\n")


def _truncated_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, "A real PDF whose second half was lost in transfer. " * 30)
    data = bytes(pdf.output())
    path.write_bytes(data[: len(data) // 2])


def _encrypted_pdf(path: Path) -> None:
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Secret minutes of the moss commission.")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    writer.encrypt(user_password="moss", owner_password="owner")
    with open(path, "wb") as fh:
        writer.write(fh)


def _no_text_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 120, 80, style="F")
    pdf.output(str(path))


def _zip_as_docx(path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "a plain zip archive, not a Word document")
    path.write_bytes(buf.getvalue())


def _unsupported(path: Path) -> None:
    path.write_text("columns,of,data\n1,2,3\n", encoding="utf-8")


def _self_symlink(path: Path) -> None:
    os.symlink(path.name, path)  # points at itself: ELOOP on open


def _utf16(path: Path) -> None:
    path.write_bytes("Minutes of the moss commission, spring session.".encode("utf-16"))


#: id -> (file name, maker, words the reason must contain (any of them, case-insensitive))
BAD_FILES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "non-UTF-8 .txt": ("legacy-latin1.txt", _latin1, ("UTF-8",)),
    "binary file named .txt": ("photo.txt", _binary, ("binary",)),
    "zero-byte file": ("placeholder.txt", _zero_bytes, ("empty",)),
    "corrupt PDF": ("broken.pdf", _corrupt_pdf, ("corrupt",)),
    "truncated PDF": ("half-downloaded.pdf", _truncated_pdf, ("corrupt",)),
    "encrypted PDF": ("locked.pdf", _encrypted_pdf, ("encrypted",)),
    "PDF without a text layer": ("scanned.pdf", _no_text_pdf, ("no text layer",)),
    "plain zip renamed .docx": ("minutes.docx", _zip_as_docx, (".docx",)),
    "unsupported extension": ("table.csv", _unsupported, ("unsupported", ".csv")),
    "symlink to itself": ("self.txt", _self_symlink, ("symbolic link",)),
    "UTF-16 .txt": ("windows-notepad.txt", _utf16, ("UTF-16", "UTF-8", "encoding")),
}

def _bad_file_params() -> list[object]:
    return list(BAD_FILES)


@pytest.mark.parametrize("case", _bad_file_params())
def test_bad_file_is_skipped_with_a_reason(case: str, workspace: tuple[Path, Path], embedder,
                                           expected: tuple[object, ...]) -> None:
    _tally(f"file: {case}", False)
    folder, index_dir = workspace
    name, make, words = BAD_FILES[case]
    make(folder / name)

    code, out, err, exc = _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress")
    assert exc is None, exc
    assert code == 0, err
    assert "Traceback" not in out + err
    assert "0 added" in out and "1 unchanged" in out and "1 skipped" in out, out
    skipped = [line for line in out.splitlines() if line.startswith(f"skipped {name}: ")]
    assert len(skipped) == 1, out
    assert any(w.lower() in skipped[0].lower() for w in words), skipped[0]

    # Nothing already indexed is lost: the index loads and answers exactly as before.
    assert _fingerprint(index_dir, embedder) == expected
    store = IndexStore.load(index_dir)
    assert set(store.manifest["files"]) == {GOOD_NAME}
    _tally(f"file: {case}")


@pytest.mark.parametrize("case", _bad_file_params())
def test_bad_file_fails_a_strict_run_and_changes_nothing(case: str, workspace: tuple[Path, Path], embedder,
                                                         expected: tuple[object, ...]) -> None:
    _tally(f"file: {case} (--strict)", False)
    folder, index_dir = workspace
    name, make, words = BAD_FILES[case]
    make(folder / name)
    before = _snapshot(index_dir)

    code, out, err, exc = _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress", "--strict")
    assert exc is None, exc
    assert code != 0
    line = _one_error_line(err)
    assert name in line and "strict" in line
    assert any(w.lower() in line.lower() for w in words), line
    assert _snapshot(index_dir) == before
    assert _fingerprint(index_dir, embedder) == expected
    _tally(f"file: {case} (--strict)")


@pytest.mark.slow
def test_strict_and_lenient_runs_as_real_processes(workspace: tuple[Path, Path], embedder,
                                                   expected: tuple[object, ...]) -> None:
    """The same contract through ``python -m rag.cli`` in a subprocess (exit codes, stderr)."""
    folder, index_dir = workspace
    _encrypted_pdf(folder / "locked.pdf")
    cmd = [sys.executable, "-m", "rag.cli", "index", str(folder), "--index-dir", str(index_dir), "--no-progress"]
    strict = subprocess.run(cmd + ["--strict"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert strict.returncode != 0
    assert "locked.pdf" in _one_error_line(strict.stderr) and "Traceback" not in strict.stdout
    lenient = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert lenient.returncode == 0, lenient.stderr
    assert "skipped locked.pdf: is an encrypted PDF" in lenient.stdout
    assert "Traceback" not in lenient.stdout + lenient.stderr
    assert _fingerprint(index_dir, embedder) == expected


# -- folders -------------------------------------------------------------------------------


def test_empty_folder_is_a_clear_error_and_keeps_the_index(tmp_path: Path, workspace: tuple[Path, Path],
                                                           embedder, expected: tuple[object, ...]) -> None:
    _tally("empty folder", False)
    _, index_dir = workspace
    empty = tmp_path / "empty"
    empty.mkdir()
    before = _snapshot(index_dir)
    code, out, err, exc = _cli("index", str(empty), "--index-dir", str(index_dir), "--no-progress")
    assert exc is None, exc
    assert code != 0
    line = _one_error_line(err)
    assert "no readable documents" in line and str(empty) in line
    assert _snapshot(index_dir) == before
    assert _fingerprint(index_dir, embedder) == expected

    fresh = tmp_path / "never-built"
    code, _, err, exc = _cli("index", str(empty), "--index-dir", str(fresh), "--no-progress")
    assert exc is None and code != 0 and "no readable documents" in _one_error_line(err)
    assert not fresh.exists()
    _tally("empty folder")


@pytest.mark.slow
def test_empty_folder_as_a_real_process(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(empty), "--index-dir", str(tmp_path / "x")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "no readable documents" in _one_error_line(proc.stderr)
    assert "Traceback" not in proc.stdout


def _in_thread(fn: Callable[[], object], timeout: float) -> tuple[bool, object]:
    """(finished, result or exception) of ``fn`` run in a daemon thread for at most ``timeout`` s."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return (not thread.is_alive()), (box[0] if box else None)


def test_symlink_loop_terminates_and_indexes_the_good_files(workspace: tuple[Path, Path], embedder,
                                                            expected: tuple[object, ...]) -> None:
    _tally("symlink loop in the folder", False)
    folder, index_dir = workspace
    os.symlink(folder, folder / "loop")  # folder/loop -> folder
    sub = folder / "annex"
    sub.mkdir()
    (sub / "annex-note.txt").write_text(
        "The annex is a table of ferry timetables for the inspectors.", encoding="utf-8")
    os.symlink(folder, sub / "back-to-top")  # a loop two levels deep

    finished, result = _in_thread(
        lambda: _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress"), timeout=240)
    assert finished, "indexing a folder with a symlink loop never finished"
    code, out, err, exc = result  # type: ignore[misc]
    assert exc is None and code == 0, (out, err)
    assert "1 added" in out and "1 unchanged" in out
    store = IndexStore.load(index_dir)
    assert set(store.manifest["files"]) == {GOOD_NAME, "annex/annex-note.txt"}
    assert not any("loop" in c.source or "back-to-top" in c.source for c in store.chunks)
    assert _fingerprint(index_dir, embedder)[:3] == expected[:3]
    _tally("symlink loop in the folder")


VANISHING = "vanishing-note.txt"


def _add_vanishing(folder: Path) -> Path:
    path = folder / VANISHING
    path.write_text("This note about moss quotas is deleted while the indexer runs.", encoding="utf-8")
    return path


def test_file_deleted_after_it_was_read_is_indexed_as_read_then_dropped(
        workspace: tuple[Path, Path], embedder, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Each file is read once: what is parsed is the very bytes that were hashed, so a file
    removed after its read is indexed as read (never half-read), and the next run drops it."""
    _tally("file deleted while indexing (after reading)", False)
    import rag.indexing

    folder, index_dir = workspace
    path = _add_vanishing(folder)
    real = rag.indexing.parse_file

    def parse_file(job, *args):  # noqa: ANN001, ANN002, ANN202
        if job.rel == VANISHING and path.exists():
            path.unlink()  # another process removed it after it was read
        return real(job, *args)

    monkeypatch.setattr(rag.indexing, "parse_file", parse_file)
    code, out, err, exc = _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress")
    assert exc is None and code == 0, (out, err)
    assert not path.exists()
    assert set(IndexStore.load(index_dir).manifest["files"]) == {GOOD_NAME, VANISHING}
    monkeypatch.undo()
    code, out, err, exc = _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress")
    assert exc is None and code == 0 and "1 removed" in out, (out, err)
    assert set(IndexStore.load(index_dir).manifest["files"]) == {GOOD_NAME}
    _tally("file deleted while indexing (after reading)")


def test_file_deleted_before_it_is_read_is_skipped(workspace: tuple[Path, Path], embedder,
                                                   expected: tuple[object, ...],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _tally("file deleted while indexing (before reading)", False)
    folder, index_dir = workspace
    path = _add_vanishing(folder)
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == VANISHING and self.exists():
            self.unlink()
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, out, err, exc = _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress")
    assert exc is None and code == 0, (out, err)
    assert not path.exists()
    line = next(x for x in out.splitlines() if x.startswith(f"skipped {VANISHING}: "))
    assert "cannot be read" in line
    assert set(IndexStore.load(index_dir).manifest["files"]) == {GOOD_NAME}
    monkeypatch.undo()
    assert _fingerprint(index_dir, embedder) == expected
    _tally("file deleted while indexing (before reading)")


@pytest.mark.slow
def test_named_pipe_is_skipped_not_waited_on(workspace: tuple[Path, Path]) -> None:
    _tally("named pipe called .txt", False)
    folder, index_dir = workspace
    fifo = folder / "notes.txt"
    os.mkfifo(fifo)
    done = threading.Event()

    def run() -> tuple[int, str, str, BaseException | None]:
        try:
            return _cli("index", str(folder), "--index-dir", str(index_dir), "--no-progress")
        finally:
            done.set()

    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(run()), daemon=True)
    thread.start()
    thread.join(20)
    hung = thread.is_alive()
    while not done.is_set():  # unblock the reader: open the pipe for writing and close it (EOF)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
        time.sleep(0.05)
    thread.join(60)
    assert not hung, "indexing blocked on a named pipe for 20 s"
    code, out, _, exc = box[0]  # type: ignore[misc]
    assert exc is None and code == 0
    assert "skipped notes.txt: " in out
    _tally("named pipe called .txt")


# -- a foreign index -------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["model_id", "dim", "format_version"])
def test_search_refuses_a_foreign_index_with_one_line(what: str, workspace: tuple[Path, Path]) -> None:
    _tally(f"index built with another {what}", False)
    _, index_dir = workspace
    path = index_dir / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if what == "model_id":
        manifest["embedder"]["model_id"] = "sentence-transformers/all-mpnet-base-v2"
    elif what == "dim":
        manifest["embedder"]["dim"] = 768
    else:
        manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest), encoding="utf-8")

    for command in (["search", QUESTION], ["ask", QUESTION]):
        code, out, err, exc = _cli(*command, "--index-dir", str(index_dir))
        assert exc is None, exc
        assert code != 0
        line = _one_error_line(err)
        assert "rag index" in line and str(index_dir) in line
        assert {"model_id": "all-mpnet-base-v2", "dim": "768", "format_version": "version"}[what] in line
        assert out == ""
    _tally(f"index built with another {what}")


@pytest.mark.parametrize(("hidden", "make"), [
    ("ray", "from rag.ray_indexing import RayWorkers\nRayWorkers('all-MiniLM-L6-v2')"),
    ("pymilvus", "from rag.milvus_store import MilvusStore\nMilvusStore('/tmp/never-made/milvus.db')"),
])
def test_a_missing_scale_extra_is_named(hidden: str, make: str) -> None:
    """--ray and --store milvus without the 'scale' extra say which extra to install."""
    code = (f"import sys\nsys.modules[{hidden!r}] = None\ntry:\n"
            + "".join(f"    {line}\n" for line in make.splitlines())
            + "except Exception as e:\n    print(type(e).__name__, e)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("ConfigError") and "pip install -e '.[scale]'" in res.stdout
