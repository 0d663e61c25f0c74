"""SIGKILL the indexer at every stage of a build; the previous index must survive.

An index is built from a small corpus, a file is added, and ``index_folder`` runs in
a child process that dies by SIGKILL at one point:

- ``embed``: inside ``embed_documents`` (the child signals, then sleeps; the test kills it);
- ``write_index``: midway through writing ``vectors.faiss`` (half the file written);
- ``chunks``: midway through writing ``chunks.jsonl``;
- ``bm25``: while the BM25 arrays are saved;
- ``fsync``: after some files of the temp folder were fsynced;
- ``swap``: between the two renames (old index moved aside, new one not yet in place);
- ``cleanup``: after the swap, before the ``.old`` copy is removed (the new index is committed);
- ``first-build``: the very first build, killed before its swap (there is no previous index).

After each: the index loads and answers the test question exactly as before the crash
(for ``cleanup``, the committed new index does), the next ``index_folder`` run succeeds
and indexes the new file, and no ``.index.tmp-*`` / ``.index.old-*`` folder is left.
tests/test_indexing.py already kills a build during embedding (300 files) and while it
hangs in fsync; these add the points it does not reach.  The module prints how many
crash points the index survived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.assistant import Assistant
from rag.indexing import index_folder
from rag.retrieval import Retriever
from rag.store import MANIFEST, IndexStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Which agency inspects the Haldor hypersonic test range?"
SURVIVED: dict[str, bool] = {}

_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path

    import faiss
    import rag.store
    from rag.embeddings import get_embedder
    from rag.indexing import index_folder

    folder, index_dir, marker, where = sys.argv[1:5]

    def die():
        Path(marker).write_text(where)
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # never reached

    embedder = get_embedder()
    if where == "embed":
        real_embed = embedder.embed_documents
        def embed_documents(texts, **kw):
            Path(marker).write_text(str(len(texts)))
            time.sleep(120)  # the parent kills us here
            return real_embed(texts, **kw)
        embedder.embed_documents = embed_documents
    elif where == "write_index":
        real_write = faiss.write_index
        def write_index(index, path):
            real_write(index, path)
            size = os.path.getsize(path)
            with open(path, "r+b") as fh:
                fh.truncate(size // 2)  # half of the file is on disk
            die()
        rag.store.faiss.write_index = write_index
    elif where == "chunks":
        real_dumps = rag.store.json.dumps
        calls = []
        def dumps(obj, *a, **kw):
            if isinstance(obj, dict) and "char_start" in obj:
                calls.append(1)
                if len(calls) == 2:  # the first chunk line is written, the second is not
                    die()
            return real_dumps(obj, *a, **kw)
        rag.store.json.dumps = dumps
    elif where == "bm25":
        real_save = rag.store.LexicalIndex.save
        def save(self, folder):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "partial.npy").write_bytes(b"\\x93NUMPY")
            die()
        rag.store.LexicalIndex.save = save
    elif where == "fsync":
        real_fsync = os.fsync
        calls = []
        def fsync(fd):
            calls.append(fd)
            if len(calls) == 3:
                die()
            return real_fsync(fd)
        rag.store.os.fsync = fsync
    elif where == "swap":
        real_rename = os.rename
        calls = []
        def rename(src, dst):
            calls.append((src, dst))
            if len(calls) == 2:  # index -> .index.old-* done; tmp -> index not yet
                die()
            return real_rename(src, dst)
        rag.store.os.rename = rename
    elif where == "cleanup":
        def rmtree(path, *a, **kw):
            if ".old-" in str(path):
                die()
        rag.store.shutil.rmtree = rmtree
    elif where == "first-build":
        def fsync_tree(folder):
            die()
        rag.store._fsync_tree = fsync_tree
    index_folder(folder, index_dir, embedder, show_progress=False)
    print("finished")
    """
)

POINTS = ["embed", "write_index", "chunks", "bm25", "fsync", "swap", "cleanup"]


@pytest.fixture(scope="module", autouse=True)
def _print_survivors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    tried = len(SURVIVED)
    line = (f"crash points: {sum(SURVIVED.values())} of {tried} survived"
            + (f" (failed: {', '.join(k for k, v in SURVIVED.items() if not v)})" if tried > sum(SURVIVED.values()) else ""))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}")


def _text(seed: int, topic: str = "") -> str:
    subjects = ["The shipyard", "The ministry", "A supplier", "The committee", "The army"]
    verbs = ["reviewed", "delayed", "funded", "audited", "expanded"]
    objects = ["the radar contract", "a training programme", "the munitions line", "spare parts orders"]
    paragraphs = []
    for p in range(3):
        sents = [f"{subjects[(seed + i) % 5]} {verbs[(seed * 3 + i + p) % 5]} {objects[(seed + 2 * i + p) % 4]} "
                 f"in year {1990 + (seed * 7 + i * 3 + p) % 40} under plan {seed}-{p}-{i}." for i in range(5)]
        if topic and p == 1:
            sents.insert(2, topic)
        paragraphs.append(" ".join(sents))
    return "\n\n".join(paragraphs)


def _corpus(folder: Path) -> None:
    folder.mkdir()
    (folder / "a.txt").write_text(
        _text(1, "The Northern Range Authority inspects the Haldor hypersonic test range every March."),
        encoding="utf-8")
    (folder / "b.txt").write_text(_text(2), encoding="utf-8")


def _fingerprint(index_dir: Path, embedder) -> tuple[object, ...]:
    answer = Assistant(index_dir, "extractive", embedder=embedder).ask(QUESTION)
    hits = Retriever(IndexStore.load(index_dir), embedder).search(QUESTION, 5)
    return (answer.text, [(c.chunk_id, c.char_start, c.char_end) for c in answer.citations],
            [(h.chunk.id, round(h.score, 6)) for h in hits])


def _debris(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".index.tmp-", ".index.old-")))


def _run_and_kill(tmp_path: Path, folder: Path, index_dir: Path, where: str) -> str:
    """Run the child until it dies at ``where``; returns what its marker recorded."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    marker = tmp_path / f"marker-{where}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAG_SHOW_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(index_dir), str(marker), where],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"the child never reached the crash point {where}")
            time.sleep(0.05)
        if where == "embed":
            assert proc.poll() is None
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert marker.exists(), f"the child exited ({proc.returncode}) before {where}: {out!r} {err[-2000:]!r}"
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
    assert b"finished" not in out
    return marker.read_text()


@pytest.mark.parametrize("where", POINTS)
def test_kill_keeps_the_previous_index(where: str, tmp_path: Path, embedder) -> None:
    SURVIVED[where] = False
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    _corpus(folder)
    index_folder(folder, index_dir, embedder, show_progress=False)
    expected = _fingerprint(index_dir, embedder)
    assert "Northern Range Authority" in str(expected[0])
    before_files = set(IndexStore.load(index_dir).manifest["files"])

    (folder / "c.txt").write_text(_text(3, "Frigate crews train in Esquimalt harbour each winter."),
                                  encoding="utf-8")
    recorded = _run_and_kill(tmp_path, folder, index_dir, where)
    if where == "embed":
        assert int(recorded) >= 1  # it was embedding c.txt when it died

    # The index loads (recovering an interrupted swap) and answers exactly as before.
    store = IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    files = set(store.manifest["files"])
    if where == "cleanup":  # the swap had happened: the new index is the committed one
        assert files == before_files | {"c.txt"}
    else:
        assert files == before_files
    assert len(store.chunks) == store.dense.ntotal == store.lexical.size
    if where == "cleanup":  # more chunks now: fused scores are normalised over a larger pool
        assert _fingerprint(index_dir, embedder)[:2] == expected[:2]
    else:
        assert _fingerprint(index_dir, embedder) == expected
    assert (index_dir / MANIFEST).is_file()

    # The next run finishes the job and leaves no temp or old folder behind.
    report = index_folder(folder, index_dir, embedder, show_progress=False)
    assert _debris(tmp_path) == []
    assert set(IndexStore.load(index_dir).manifest["files"]) == before_files | {"c.txt"}
    if where == "cleanup":
        assert not report.changed
    else:
        assert report.added == ["c.txt"] and sorted(report.unchanged) == sorted(before_files)
    assert _fingerprint(index_dir, embedder)[:2] == expected[:2]
    SURVIVED[where] = True


def test_kill_during_the_first_build_leaves_nothing_half_built(tmp_path: Path, embedder) -> None:
    SURVIVED["first-build"] = False
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    _corpus(folder)
    _run_and_kill(tmp_path, folder, index_dir, "first-build")
    assert not index_dir.exists()
    assert _debris(tmp_path)  # the dead child's temp folder is still there ...
    report = index_folder(folder, index_dir, embedder, show_progress=False)
    assert _debris(tmp_path) == []  # ... until the next run clears it
    assert sorted(report.added) == ["a.txt", "b.txt"]
    assert "Northern Range Authority" in str(_fingerprint(index_dir, embedder)[0])
    SURVIVED["first-build"] = True
