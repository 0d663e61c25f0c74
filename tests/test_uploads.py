"""Uploaded file names never escape the corpus folder; bad uploads change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.errors import LoaderError
from rag.uploads import MAX_NAME, add_to_corpus, safe_name

HOSTILE = [
    "../x.md",
    "../../etc/passwd.md",
    "/etc/passwd",
    "..\\x.md",
    "C:\\Windows\\win.ini.txt",
    "a\x00b.md",
    "x" * 5000 + ".md",
    "....md",
    "notes/../../../escape.txt",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_stored_inside_the_corpus_or_refused(tmp_path: Path, name: str) -> None:
    corpus = tmp_path / "corpus"
    src = tmp_path / "upload.bin"
    src.write_text("# Notes\n\nThe depot holds forty-two spare rotor blades for the fleet.\n", encoding="utf-8")
    try:
        stored = add_to_corpus(src, corpus, name=name)
    except (ValueError, LoaderError) as exc:
        assert str(exc)  # refused with a message
        assert not any(p for p in tmp_path.rglob("*") if p.is_file() and p != src)  # no staging copy either
        return
    assert stored.resolve().parent == corpus.resolve()
    assert "\x00" not in stored.name and "/" not in stored.name and "\\" not in stored.name
    assert len(stored.name) <= MAX_NAME
    # nothing was written anywhere else
    others = [p for p in tmp_path.rglob("*") if p.is_file() and p not in (src, stored)]
    assert others == []


def test_a_bad_upload_is_refused_and_nothing_is_copied(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    bad = tmp_path / "report.pdf"
    bad.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(LoaderError) as err:
        add_to_corpus(bad, corpus)
    assert "report.pdf" in str(err.value)
    assert list(corpus.iterdir()) == []


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_copied(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    big = tmp_path / "big.txt"
    big.write_text("The archive lists every shipment of the year in order. " * 400, encoding="utf-8")
    with pytest.raises(LoaderError, match="upload limit") as err:
        add_to_corpus(big, corpus, max_bytes=10_000)
    assert "big.txt" in str(err.value) and "RAG_MAX_UPLOAD_MB" in str(err.value)
    assert list(corpus.iterdir()) == []
    assert add_to_corpus(big, corpus, max_bytes=big.stat().st_size).read_bytes() == big.read_bytes()


def test_the_size_limit_is_a_setting_of_the_assistant(tmp_path: Path, seed_index, embedder) -> None:  # noqa: ANN001
    from rag.assistant import Assistant
    from rag.config import Settings

    settings = Settings(max_upload_mb=0.001)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    doc = tmp_path / "notes.txt"
    doc.write_text("The depot holds forty-two spare rotor blades for the fleet. " * 50, encoding="utf-8")
    assistant = Assistant(seed_index[1], "extractive", embedder=embedder, settings=settings)
    with pytest.raises(LoaderError, match="upload limit"):
        assistant.add_files([doc], corpus)
    assert list(corpus.iterdir()) == []


def test_a_link_planted_in_the_corpus_is_never_written_through(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched", encoding="utf-8")
    (corpus / "notes.txt").symlink_to(outside)
    src = tmp_path / "upload.txt"
    src.write_text("The depot holds forty-two spare rotor blades for the fleet.", encoding="utf-8")
    stored = add_to_corpus(src, corpus, name="notes.txt")
    assert outside.read_text(encoding="utf-8") == "untouched"
    assert stored.name == "notes (1).txt" and not stored.is_symlink()
    assert sorted(p.name for p in corpus.iterdir()) == ["notes (1).txt", "notes.txt"]


def test_same_name_gets_a_numbered_copy_not_an_overwrite(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    src = tmp_path / "a.txt"
    src.write_text("First version of the note about supply chains.", encoding="utf-8")
    first = add_to_corpus(src, corpus)
    src.write_text("Second version of the note about supply chains.", encoding="utf-8")
    second = add_to_corpus(src, corpus)
    assert first != second and first.read_text().startswith("First") and second.read_text().startswith("Second")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=400))
def test_safe_name_never_yields_a_path(name: str) -> None:
    try:
        out = safe_name(name)
    except ValueError:
        return
    assert out and "/" not in out and "\\" not in out and "\x00" not in out
    assert out not in (".", "..") and not out.startswith(".")
    assert len(out) <= MAX_NAME
    assert Path(out).name == out


def test_a_compressed_upload_keeps_its_double_suffix(tmp_path: Path) -> None:
    import gzip

    corpus = tmp_path / "corpus"
    src = tmp_path / "upload.bin"
    src.write_bytes(gzip.compress(b"# Notes\n\nThe depot holds forty-two spare rotor blades for the fleet.\n"))
    first = add_to_corpus(src, corpus, name="notes.md.gz")
    second = add_to_corpus(src, corpus, name="notes.md.gz")
    assert (first.name, second.name) == ("notes.md.gz", "notes (1).md.gz")
    assert safe_name("x" * 500 + ".pdf.gz").endswith(".pdf.gz")
    with pytest.raises(LoaderError, match="unsupported file type"):
        add_to_corpus(src, corpus, name="ssh_config.5.gz")
    assert sorted(p.name for p in corpus.iterdir()) == ["notes (1).md.gz", "notes.md.gz"]
