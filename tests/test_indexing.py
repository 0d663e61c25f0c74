"""index_folder: bad files, strict mode, crash safety, incremental updates, staleness."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rag.indexing import IndexingError, index_folder, stale_reason
from rag.retrieval import Retriever
from rag.sentences import sentence_spans
from rag.store import MANIFEST, IndexStore

ROOT = Path(__file__).resolve().parent.parent

_SUBJECTS = ["The shipyard", "The ministry", "An allied firm", "The army", "A supplier", "The committee"]
_VERBS = ["reviewed", "delayed", "funded", "expanded", "audited", "cancelled"]
_OBJECTS = ["the radar contract", "a training programme", "the munitions line", "spare parts orders",
            "the logistics depot", "a software upgrade"]


def _prose(seed: int, paragraphs: int = 3, sentences: int = 6, topic: str = "") -> str:
    """Deterministic generated report text; ``topic`` is woven into every paragraph."""
    rng = random.Random(seed)
    out = []
    for p in range(paragraphs):
        sents = [
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} in year {rng.randint(1990, 2030)}"
            f" under plan {seed}-{p}-{i}."
            for i in range(sentences)
        ]
        if topic:
            sents.insert(rng.randint(0, len(sents)), topic)
        out.append(" ".join(sents))
    return "\n\n".join(out)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _search(index_dir: Path, embedder, query: str, k: int = 5) -> list[tuple[str, float]]:
    store = IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    return [(h.chunk.id, h.score) for h in Retriever(store, embedder).search(query, k)]


# -- bad files and strict mode ---------------------------------------------------------


def _add_bad_files(folder: Path) -> dict[str, str]:
    """Write broken files; returns name -> a word the skip reason must contain."""
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (folder / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me.".encode("latin-1"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "zip")
    (folder / "renamed.docx").write_bytes(buf.getvalue())
    (folder / "data.xyz").write_text("unsupported", encoding="utf-8")
    return {"broken.pdf": "corrupt", "empty.txt": "empty", "binary.txt": "binary",
            "latin1.txt": "UTF-8", "renamed.docx": ".docx", "data.xyz": "unsupported"}


def test_bad_files_are_skipped_with_reasons(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text(_prose(1, topic="Icebreakers patrol the Northwest Passage."), encoding="utf-8")
    expected = _add_bad_files(folder)

    report = index_folder(folder, tmp_path / "index", embedder, show_progress=False)
    assert report.added == ["good.txt"]
    assert set(report.skipped) == set(expected)
    for name, word in expected.items():
        assert word.lower() in report.skipped[name].lower(), (name, report.skipped[name])
    for name in expected:
        assert name in report.summary()

    store = IndexStore.load(tmp_path / "index")
    assert {c.source for c in store.chunks} == {"good.txt"}
    assert set(store.manifest["files"]) == {"good.txt"}
    assert store.manifest["counts"]["chunks"] == report.chunks == len(store.chunks) > 0
    hits = Retriever(store, embedder).search("Who patrols the Northwest Passage?", 1)
    assert "Icebreakers" in hits[0].chunk.text


def test_strict_fails_and_keeps_previous_index(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text(_prose(2), encoding="utf-8")
    index_dir = tmp_path / "index"
    index_folder(folder, index_dir, embedder, strict=True, show_progress=False)
    before = _snapshot(index_dir)

    (folder / "new.txt").write_text(_prose(3), encoding="utf-8")  # a good change that must not land
    _add_bad_files(folder)
    calls = embedder.calls
    with pytest.raises(IndexingError) as info:
        index_folder(folder, index_dir, embedder, strict=True, show_progress=False)
    message = str(info.value)
    for name in ("broken.pdf", "empty.txt", "binary.txt", "renamed.docx", "data.xyz"):
        assert name in message
    assert embedder.calls == calls  # failed before embedding anything
    assert _snapshot(index_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "index"]


def test_empty_folder_is_an_error(tmp_path: Path, embedder) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "empty.txt").write_bytes(b"")
    with pytest.raises(IndexingError, match="no readable documents"):
        index_folder(tmp_path / "docs", tmp_path / "index", embedder, show_progress=False)
    assert not (tmp_path / "index").exists()


# -- crash safety --------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import rag.store
    from rag.embeddings import get_embedder
    from rag.indexing import index_folder

    folder, index_dir, marker, where = sys.argv[1:5]
    embedder = get_embedder()
    if where == "embed":
        real = embedder.embed_documents
        def embed_documents(texts, **kw):
            Path(marker).write_text(str(len(texts)))
            return real(texts, **kw)
        embedder.embed_documents = embed_documents
    else:  # hang inside save, after the temp folder is fully written, before the swap
        def fsync_tree(folder):
            Path(marker).write_text(str(folder))
            time.sleep(120)
        rag.store._fsync_tree = fsync_tree
    index_folder(folder, index_dir, embedder, show_progress=False)
    print("finished")
    """
)


def _run_and_kill(tmp_path: Path, folder: Path, index_dir: Path, where: str) -> str:
    """Index in a child process, SIGKILL it at ``where``; returns what the marker recorded."""
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    marker = tmp_path / f"marker-{where}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAG_SHOW_PROGRESS="0")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(index_dir), str(marker), where],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"child exited early ({proc.returncode}): {out.decode()} {err.decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("child never reached the crash point")
            time.sleep(0.05)
        if where == "embed":
            time.sleep(0.3)  # well inside encode()
        assert proc.poll() is None, "the build finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text()


QUERY = "Which agency inspects the hypersonic missile test range?"


def _small_corpus(folder: Path) -> None:
    folder.mkdir()
    (folder / "a.txt").write_text(_prose(10, topic="The range authority inspects the hypersonic missile test range."),
                                  encoding="utf-8")
    (folder / "b.txt").write_text(_prose(11), encoding="utf-8")


def test_kill_during_embedding_keeps_previous_index(tmp_path: Path, embedder) -> None:
    small, index_dir = tmp_path / "small", tmp_path / "index"
    _small_corpus(small)
    index_folder(small, index_dir, embedder, show_progress=False)
    before_files = _snapshot(index_dir)
    expected = _search(index_dir, embedder, QUERY)

    big = tmp_path / "big"
    big.mkdir()
    for i in range(300):
        (big / f"report-{i:03d}.txt").write_text(_prose(1000 + i, paragraphs=3, sentences=4), encoding="utf-8")

    embedding = int(_run_and_kill(tmp_path, big, index_dir, "embed"))
    assert embedding >= 300  # it was embedding the whole new corpus when it died

    assert _snapshot(index_dir) == before_files
    assert _search(index_dir, embedder, QUERY) == expected
    store = IndexStore.load(index_dir)
    assert set(store.manifest["files"]) == {"a.txt", "b.txt"}


def test_kill_during_save_leaves_old_index_and_stale_temp_is_cleared(tmp_path: Path, embedder) -> None:
    small, index_dir = tmp_path / "small", tmp_path / "index"
    _small_corpus(small)
    index_folder(small, index_dir, embedder, show_progress=False)
    before_files = _snapshot(index_dir)
    expected = _search(index_dir, embedder, QUERY)

    (small / "c.txt").write_text(_prose(12), encoding="utf-8")
    tmp_dir = Path(_run_and_kill(tmp_path, small, index_dir, "save"))
    assert tmp_dir.name.startswith(".index.tmp-")
    assert tmp_dir.is_dir() and (tmp_dir / MANIFEST).is_file()  # the crash left a full temp copy
    assert _snapshot(index_dir) == before_files

    calls = embedder.calls
    report = index_folder(small, index_dir, embedder, show_progress=False)  # the next run
    assert not tmp_dir.exists()
    assert not list(tmp_path.glob(".index.*"))
    assert report.added == ["c.txt"] and sorted(report.unchanged) == ["a.txt", "b.txt"]
    assert report.embedded == len(IndexStore.load(index_dir).manifest["files"]["c.txt"]["chunk_ids"])
    assert embedder.calls - calls == report.embedded + report.sentences_embedded
    assert _search(index_dir, embedder, QUERY)[0][0] == expected[0][0]


# -- incremental updates ------------------------------------------------------------------


def test_incremental_update_embeds_only_changed_and_added(tmp_path: Path, embedder) -> None:
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    folder.mkdir()
    (folder / "keep.txt").write_text(_prose(20, topic="Frigate crews train in Esquimalt harbour."), encoding="utf-8")
    (folder / "change.txt").write_text(_prose(21), encoding="utf-8")
    (folder / "drop.txt").write_text(_prose(22, topic="Tank regiments exercise in Latvia each winter."),
                                     encoding="utf-8")
    first = index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    assert sorted(first.added) == ["change.txt", "drop.txt", "keep.txt"]
    old = IndexStore.load(index_dir)
    keep_ids = old.manifest["files"]["keep.txt"]["chunk_ids"]
    keep_vectors = old.vectors([old.row_of(c) for c in keep_ids])

    (folder / "change.txt").write_text(_prose(21) + "\n\nA new paragraph reports on drone procurement.",
                                       encoding="utf-8")
    (folder / "new.txt").write_text(_prose(23, topic="Arctic sovereignty patrols use Twin Otter aircraft."),
                                    encoding="utf-8")
    (folder / "drop.txt").unlink()

    calls = embedder.calls
    report = index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    embedded = embedder.calls - calls

    assert report.added == ["new.txt"]
    assert report.updated == ["change.txt"]
    assert report.removed == ["drop.txt"]
    assert report.unchanged == ["keep.txt"]
    assert report.skipped == {}

    store = IndexStore.load(index_dir)
    files = store.manifest["files"]
    assert set(files) == {"keep.txt", "change.txt", "new.txt"}
    recut = [store.chunks[store.row_of(c)].text for name in ("change.txt", "new.txt") for c in files[name]["chunk_ids"]]
    # Chunks of the changed file that kept their text keep their vectors: only new text is embedded.
    new_text = [t for t in recut if t not in {c.text for c in old.chunks}]
    assert report.embedded == len(new_text) < len(recut)
    assert report.embedded < len(store.chunks)  # keep.txt was not re-embedded
    # Sentence vectors too: only sentences the old index did not hold are embedded.
    def sentences(chunks):  # noqa: ANN001, ANN202
        return {c.text[a:b] for c in chunks for a, b in sentence_spans(c.text)}
    new_sentences = sentences(store.chunks) - sentences(old.chunks)
    assert 0 < report.sentences_embedded == len(new_sentences) < len(sentences(store.chunks))
    assert embedded == report.embedded + report.sentences_embedded
    assert len(store.sentences) == len(sentences(store.chunks))
    for text in sentences(old.chunks) & sentences(store.chunks):
        assert np.array_equal(store.sentences.get(text), old.sentences.get(text))
    assert files["keep.txt"]["chunk_ids"] == keep_ids
    assert np.array_equal(store.vectors([store.row_of(c) for c in keep_ids]), keep_vectors)
    assert {c.source for c in store.chunks} == {"keep.txt", "change.txt", "new.txt"}
    assert len(store.chunks) == sum(len(f["chunk_ids"]) for f in files.values())

    retriever = Retriever(store, embedder)
    assert retriever.search("Which aircraft fly Arctic sovereignty patrols?", 1)[0].chunk.source == "new.txt"
    assert retriever.search("drone procurement", 1, mode="lexical")[0].chunk.source == "change.txt"
    assert retriever.search("Esquimalt harbour frigate crews", 1)[0].chunk.source == "keep.txt"
    assert all("Latvia" not in h.chunk.text for h in retriever.search("tank regiments in Latvia", 10))

    # Nothing changed: nothing embedded, the index files are not rewritten.
    before = _snapshot(index_dir)
    calls = embedder.calls
    again = index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    assert embedder.calls == calls and again.embedded == 0 and not again.changed
    assert sorted(again.unchanged) == ["change.txt", "keep.txt", "new.txt"]
    assert _snapshot(index_dir) == before


def test_the_text_pipeline_fingerprint_follows_code_not_comments() -> None:
    """Documenting the text pipeline leaves indexes current; changing what it does re-cuts them."""
    import rag.cleaning
    from rag.indexing import code_fingerprint

    plain = "X = 3\n\n\ndef f(a):\n    return a + X\n"
    documented = ('"""A module."""\n# a note\nX = 3  #: three\n\n\ndef f(a):\n    """Add X."""\n'
                  "    # why\n    return a + X  # the sum\n")
    assert code_fingerprint(documented) == code_fingerprint(plain)
    assert code_fingerprint(plain.replace("X = 3", "X = 4")) != code_fingerprint(plain)
    assert code_fingerprint(plain.replace("a + X", "X + a")) != code_fingerprint(plain)
    source = Path(rag.cleaning.__file__).read_text(encoding="utf-8")
    commented = source.replace("\nEDGE_LINES = 3\n", "\n# one more word about it\nEDGE_LINES = 3  # lines\n")
    assert commented != source and code_fingerprint(commented) == code_fingerprint(source)
    assert code_fingerprint(source.replace("\nEDGE_LINES = 3\n", "\nEDGE_LINES = 2\n")) != code_fingerprint(source)


def test_compressed_documents_are_indexed_searched_and_tracked(tmp_path: Path, embedder) -> None:
    """A folder as Debian leaves /usr/share/doc: "notes.txt.gz" is indexed and found like
    "notes.txt"; unchanged, it is not re-read; a compressed file of an unknown kind is skipped."""
    import gzip

    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    folder.mkdir()
    topic = "Arctic sovereignty patrols use Twin Otter aircraft."
    (folder / "patrols.txt.gz").write_bytes(gzip.compress(_prose(31, topic=topic).encode("utf-8")))
    (folder / "plain.txt").write_text(_prose(32), encoding="utf-8")
    (folder / "page.5.gz").write_bytes(gzip.compress(b".TH PAGE 5"))
    first = index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    assert sorted(first.added) == ["patrols.txt.gz", "plain.txt"]
    assert first.skipped == {"page.5.gz": "unsupported file type '.5.gz'"}
    store = IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)
    best = Retriever(store, embedder).search("Which aircraft do Arctic patrols use?", 1)[0]
    assert best.chunk.source == "patrols.txt.gz" and "Twin Otter" in best.chunk.text
    again = index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    assert sorted(again.unchanged) == ["patrols.txt.gz", "plain.txt"] and again.added == []


def test_changed_chunking_rechunks_everything(tmp_path: Path, embedder) -> None:
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    folder.mkdir()
    (folder / "a.txt").write_text(_prose(30), encoding="utf-8")
    index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    before = {c.text for c in IndexStore.load(index_dir).chunks}
    assert "chunk_size" in (stale_reason(folder, index_dir, embedder, chunk_size=500, chunk_overlap=50) or "")
    calls = embedder.calls
    report = index_folder(folder, index_dir, embedder, chunk_size=500, chunk_overlap=50, show_progress=False)
    assert "chunking changed" in report.rebuilt_reason
    assert report.updated == ["a.txt"] and not report.unchanged
    after = IndexStore.load(index_dir)
    assert after.manifest["chunking"]["chunk_size"] == 500 and after.manifest["chunking"]["chunk_overlap"] == 50
    # Only chunk text the old index did not hold is embedded.
    assert report.embedded == len({c.text for c in after.chunks} - before) > 0
    assert embedder.calls - calls == report.embedded + report.sentences_embedded
    assert stale_reason(folder, index_dir, embedder, chunk_size=500, chunk_overlap=50) is None


def test_index_cut_by_other_code_is_rechunked_reusing_unchanged_vectors(tmp_path: Path, embedder) -> None:
    """An index whose manifest names another text pipeline is stale, although its files, embedder
    and settings match; re-indexing re-cuts every file, keeps the vectors of unchanged chunk text
    and replaces chunks that the current code cuts differently."""
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    folder.mkdir()
    (folder / "a.txt").write_text(_prose(31), encoding="utf-8")
    (folder / "b.txt").write_text(_prose(32), encoding="utf-8")
    index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    fresh = IndexStore.load(index_dir)
    assert stale_reason(folder, index_dir, embedder) is None

    # What an older version would have left: another pipeline id, and one chunk cut differently.
    manifest = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
    manifest["chunking"]["pipeline"] = "0000000000000000"
    (index_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    chunks_file = index_dir / "chunks.jsonl"
    lines = chunks_file.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["text"] = first["text"].upper()
    chunks_file.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n", encoding="utf-8")
    assert "another version" in (stale_reason(folder, index_dir, embedder) or "")

    calls = embedder.calls
    report = index_folder(folder, index_dir, embedder, chunk_size=300, chunk_overlap=50, show_progress=False)
    assert "another version" in report.rebuilt_reason
    assert sorted(report.updated) == ["a.txt", "b.txt"] and not report.unchanged
    # Only the chunk whose text differed; its sentences' vectors are still in the old index.
    assert embedder.calls - calls == report.embedded == 1 and report.sentences_embedded == 0
    again = IndexStore.load(index_dir)
    assert [c.text for c in again.chunks] == [c.text for c in fresh.chunks]
    rows = list(range(len(fresh.chunks)))
    assert np.allclose(again.vectors(rows), fresh.vectors(rows), atol=1e-6)
    assert stale_reason(folder, index_dir, embedder) is None


def test_shipped_index_is_current(embedder) -> None:
    """The committed index/ was cut by this code from seeds/: the first start does not re-index
    (after changing how documents are read or cut, run: rag index)."""
    assert stale_reason(ROOT / "seeds", ROOT / "index", embedder) is None


# -- staleness ---------------------------------------------------------------------------


def test_stale_reason(tmp_path: Path, seed_index, embedder) -> None:
    seeds, index_dir, _ = seed_index
    folder = tmp_path / "seeds"
    shutil.copytree(seeds, folder)
    assert stale_reason(folder, index_dir, embedder) is None

    name = "defence-production-op-ed-2025.txt"
    path = folder / name
    path.write_text(path.read_text(encoding="utf-8") + "\n\nAn added closing line.", encoding="utf-8")
    reason = stale_reason(folder, index_dir, embedder)
    assert reason is not None
    assert name in reason and "changed" in reason

    fresh = tmp_path / "fresh"
    shutil.copytree(seeds, fresh)
    (fresh / "extra.md").write_text("# Extra\n\nA new file.", encoding="utf-8")
    assert "extra.md" in (stale_reason(fresh, index_dir, embedder) or "")

    assert "no index" in (stale_reason(folder, tmp_path / "missing", embedder) or "")


def test_stale_reason_counts_skipped_files(tmp_path: Path, embedder) -> None:
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    folder.mkdir()
    (folder / "good.txt").write_text(_prose(40), encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    index_folder(folder, index_dir, embedder, show_progress=False)
    manifest = json.loads((index_dir / MANIFEST).read_text(encoding="utf-8"))
    assert "empty.txt" in manifest["skipped"]
    assert stale_reason(folder, index_dir, embedder) is None  # a known-bad file is not "new"
    (folder / "empty.txt").write_text("Now it has text.", encoding="utf-8")
    assert "empty.txt" in (stale_reason(folder, index_dir, embedder) or "")


def test_duplicate_file_is_skipped_and_not_reported_stale(tmp_path: Path, embedder) -> None:
    folder, index_dir = tmp_path / "docs", tmp_path / "index"
    folder.mkdir()
    text = _prose(41)
    (folder / "a.txt").write_text(text, encoding="utf-8")
    (folder / "copy-of-a.txt").write_text(text, encoding="utf-8")
    report = index_folder(folder, index_dir, embedder, show_progress=False)
    assert report.added == ["a.txt"]
    assert report.skipped == {"copy-of-a.txt": "same content as a.txt"}
    assert stale_reason(folder, index_dir, embedder) is None
    (folder / "copy-of-a.txt").write_text(text + "\n\nNow it differs.", encoding="utf-8")
    assert "copy-of-a.txt" in (stale_reason(folder, index_dir, embedder) or "")


def test_changed_files_are_parsed_in_batches_of_bounded_size(tmp_path: Path, seeds_dir: Path, embedder,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Files are read ahead of parsing only up to PARSE_BATCH_BYTES, and the batches make the
    same index as one pass."""
    import rag.indexing
    from rag.indexing import LocalWorkers

    whole = index_folder(seeds_dir, tmp_path / "whole", embedder, show_progress=False)
    batches: list[list[str]] = []

    class Recording(LocalWorkers):
        def parse(self, jobs, chunk_size, chunk_overlap, progress):  # noqa: ANN001, ANN201
            if jobs:
                batches.append([j.rel for j in jobs])
            return super().parse(jobs, chunk_size, chunk_overlap, progress)

    monkeypatch.setattr(rag.indexing, "PARSE_BATCH_BYTES", 1)
    batched = index_folder(seeds_dir, tmp_path / "batched", embedder, show_progress=False,
                           workers=Recording(embedder))
    assert batches == [[name] for name in sorted(p.name for p in seeds_dir.glob("*.txt"))]
    assert batched.added == whole.added and batched.chunks == whole.chunks
    a, b = IndexStore.load(tmp_path / "whole"), IndexStore.load(tmp_path / "batched")
    assert [c.to_dict() for c in a.chunks] == [c.to_dict() for c in b.chunks]
