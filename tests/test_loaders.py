"""Loaders: seed cleaning, PDF page mapping, docx/html, and errors that name the file."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from rag.chunking import chunk_document
from rag.errors import LoaderError, UnsupportedFormatError
from rag.loaders import SUPPORTED_SUFFIXES, load_document

CDAI = "cdai-defence-industrial-base-cooperation-2025.txt"


# -- seed artefacts -----------------------------------------------------------


@pytest.fixture(scope="module")
def cdai(seeds_dir: Path):
    return load_document(seeds_dir / CDAI)


def test_seed_raw_file_has_the_artefacts_cleaning_must_fix(seeds_dir: Path) -> None:
    # Guards the cleaning test below: the raw file really is broken in these places.
    raw = (seeds_dir / CDAI).read_text(encoding="utf-8")
    assert "Image Credits" in raw
    assert re.search("[¹²³⁴]", raw)
    assert "generational effort" not in raw
    assert "blueprint for deepening engagement" not in raw


@pytest.mark.parametrize("phrase", [
    "generational effort",
    "importance of efforts",
    "blueprint for deepening engagement",
])
def test_seed_sentences_broken_by_artefacts_are_joined(cdai, phrase: str) -> None:
    assert phrase in cdai.text


def test_seed_debris_and_markers_removed(cdai) -> None:
    assert "Image Credits" not in cdai.text
    assert not re.search("[¹²³⁴⁵⁶⁷⁸⁹⁰]", cdai.text)
    assert "[Combat Camera](#)" not in cdai.text


def test_seed_footnotes_move_to_final_notes_section(cdai) -> None:
    paragraphs = cdai.text.split("\n\n")
    assert "Notes" in paragraphs
    notes_at = len(paragraphs) - 1 - paragraphs[::-1].index("Notes")
    notes = paragraphs[notes_at + 1:]
    note3 = "3. In January 2025, Minister Blair announced a new target date of 2027."
    assert any(p.startswith(note3) for p in notes)
    assert [p.split(".", 1)[0] for p in notes] == ["1", "2", "3", "4"]
    # Footnote bodies no longer interrupt the body text.
    body = "\n\n".join(paragraphs[:notes_at])
    assert "Minister Blair announced a new target date" not in body


def test_seed_title_and_metadata_from_catalog(cdai) -> None:
    assert cdai.title == "Force Development: Defence and Industrial Base Cooperation Amongst Allies"
    assert cdai.metadata["kind"] == "report"
    assert "title" not in cdai.metadata
    assert cdai.source == CDAI


# -- PDF page mapping -----------------------------------------------------------


PAGE_TEXTS = [
    "Alpha page discusses artillery shell production in Ontario. Output doubled in one year.",
    "Bravo page covers naval shipbuilding schedules in Halifax. Two frigates were delayed.",
    "Charlie page reviews satellite launch contracts with allies. The budget was approved.",
]


def _make_pdf(path: Path, pages: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))


def test_pdf_pages_map_to_offsets_and_chunks(tmp_path: Path) -> None:
    path = tmp_path / "three-pages.pdf"
    _make_pdf(path, PAGE_TEXTS)
    doc = load_document(path)

    assert [s.page for s in doc.pages] == [1, 2, 3]
    assert doc.pages[0].start == 0 and doc.pages[-1].end == len(doc.text)
    for a, b in zip(doc.pages, doc.pages[1:]):
        assert a.end == b.start  # every character belongs to exactly one page
    for number, text in enumerate(PAGE_TEXTS, start=1):
        for sentence in text.split(". "):
            offset = doc.text.find(sentence.rstrip("."))
            assert offset >= 0, sentence
            assert doc.page_at(offset) == number
            assert doc.page_at(offset + len(sentence) - 2) == number

    chunks = chunk_document(doc, size=100, overlap=0)
    assert len(chunks) >= 3
    keyword_page = {"Alpha": 1, "Bravo": 2, "Charlie": 3, "Halifax": 2, "satellite": 3, "Ontario": 1}
    seen_pages = set()
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.char_start:chunk.char_end]
        assert chunk.page_start <= chunk.page_end
        for word, page in keyword_page.items():
            if word in chunk.text:
                assert chunk.page_start <= page <= chunk.page_end, (word, chunk)
        if chunk.page_start == chunk.page_end:
            seen_pages.add(chunk.page_start)
    assert seen_pages == {1, 2, 3}
    by_page = {c.page_start: c for c in chunks if c.page_start == c.page_end}
    assert "Charlie" in by_page[3].text or "satellite" in by_page[3].text

    (whole,) = chunk_document(doc, size=2000, overlap=0)
    assert (whole.page_start, whole.page_end) == (1, 3)


def test_pdf_sentence_cut_by_page_break_is_joined(tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    _make_pdf(path, ["The shipyard hired four hundred", "welders last spring. Output rose."])
    doc = load_document(path)
    offset = doc.text.index("four hundred welders last spring.")
    assert doc.page_at(offset) == 1
    assert doc.page_at(doc.text.index("Output rose.")) == 2


# -- docx and html ----------------------------------------------------------------


def test_docx_heading_is_title_without_core_title(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Submarine Renewal Options", level=1)
    d.add_paragraph("The navy compared four designs for the new fleet.")
    d.add_paragraph("Range under ice was the deciding factor.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Design A"
    table.rows[0].cells[1].text = "12 boats"
    assert not d.core_properties.title
    path = tmp_path / "subs.docx"
    d.save(str(path))

    doc = load_document(path, catalog={})
    assert doc.title == "Submarine Renewal Options"
    assert "The navy compared four designs for the new fleet." in doc.text
    assert "Range under ice was the deciding factor." in doc.text
    assert "Design A | 12 boats" in doc.text
    assert len(doc.pages) == 1


def test_docx_core_title_wins_over_heading(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = "Official Title"
    d.add_heading("Heading Title", level=1)
    d.add_paragraph("Some body text here.")
    path = tmp_path / "titled.docx"
    d.save(str(path))
    assert load_document(path, catalog={}).title == "Official Title"


def test_html_drops_script_and_style_and_uses_title(tmp_path: Path) -> None:
    html = """<!doctype html><html><head><title>Arctic Radar Upgrade</title>
    <style>p { color: red; } .secret-style {}</style>
    <script>var trackingCode = "do-not-index";</script></head>
    <body><nav>Home | About</nav>
    <h1>Page heading</h1>
    <p>The North Warning System radars are being replaced.</p>
    <p>Over-the-horizon radar will extend coverage by <b>hundreds</b> of kilometres.</p>
    <script>console.log("also not text")</script>
    <noscript>Enable JavaScript to continue</noscript>
    <footer>Copyright footer boilerplate</footer>
    </body></html>"""
    path = tmp_path / "radar.html"
    path.write_text(html, encoding="utf-8")
    doc = load_document(path, catalog={})

    assert doc.title == "Arctic Radar Upgrade"
    assert "The North Warning System radars are being replaced." in doc.text
    assert "Over-the-horizon radar will extend coverage by hundreds of kilometres." in doc.text
    for absent in ("trackingCode", "do-not-index", "console.log", "color: red", "secret-style", "<script",
                   "Enable JavaScript", "footer boilerplate", "Home | About"):
        assert absent not in doc.text


def test_html_without_title_uses_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text("<html><body><h1>Only Heading</h1><p>Body sentence.</p></body></html>", encoding="utf-8")
    assert load_document(path, catalog={}).title == "Only Heading"


# -- errors name the file ---------------------------------------------------------


def _corrupt_pdf(path: Path) -> None:
    path.write_bytes(b"%PDF-1.4 garbage")


def _binary_txt(path: Path) -> None:
    path.write_bytes(b"hello\x00\x01\x02world" * 50)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _latin1_txt(path: Path) -> None:
    path.write_bytes("Déjà vu in the café, naïve señor.".encode("latin-1"))


def _zip_as_docx(path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "just a zip, not a Word document")
    path.write_bytes(buf.getvalue())


def _encrypted_pdf(path: Path) -> None:
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Secret text on an encrypted page.")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    writer.encrypt(user_password="s3cret", owner_password="owner")
    with open(path, "wb") as fh:
        writer.write(fh)


def _image_only_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.output(str(path))


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("broken-report.pdf", _corrupt_pdf, "corrupt"),
        ("actually-binary.txt", _binary_txt, "binary"),
        ("nothing-here.txt", _empty, "empty"),
        ("legacy-encoding.txt", _latin1_txt, "UTF-8"),
        ("renamed-zip.docx", _zip_as_docx, ".docx"),
        ("locked.pdf", _encrypted_pdf, "encrypted"),
        ("scanned.pdf", _image_only_pdf, "no text layer"),
    ],
)
def test_bad_files_raise_loader_error_naming_the_file(tmp_path: Path, name, make, reason: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(LoaderError) as info:
        load_document(path)
    message = str(info.value)
    assert name in message
    assert reason.lower() in message.lower()
    assert info.value.reason in message


def test_unsupported_extension_lists_supported_types(tmp_path: Path) -> None:
    path = tmp_path / "data.xyz"
    path.write_text("plain words", encoding="utf-8")
    with pytest.raises(UnsupportedFormatError) as info:
        load_document(path)
    message = str(info.value)
    assert "data.xyz" in message and "'.xyz'" in message
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in message
    assert isinstance(info.value, LoaderError)


def test_encrypted_pdf_fixture_really_is_encrypted(tmp_path: Path) -> None:
    from pypdf import PdfReader

    path = tmp_path / "locked.pdf"
    _encrypted_pdf(path)
    reader = PdfReader(str(path))
    assert reader.is_encrypted
    assert reader.decrypt("s3cret")  # and it has a text layer once unlocked
    assert "Secret text" in reader.pages[0].extract_text()


def test_manual_page_line_break_hyphens_are_resolved_by_the_documents_spelling(tmp_path: Path) -> None:
    # `man` (groff) breaks a word at a line end with U+2010 and indents the next line.
    page = ("DESCRIPTION\n"
            "       A  crontab file contains instructions to the cron(8) daemon of the gen\u2010\n"
            "       eral form.  Lines may name a non\u2010\n"
            "       empty list; a non-empty list is read in general order.\n")
    path = tmp_path / "crontab.5.txt"
    path.write_text(page, encoding="utf-8")
    text = load_document(path).text
    assert "\u2010" not in text
    assert "daemon of the general form." in text   # the typesetter's hyphen: joined
    assert "may name a non-empty list" in text     # the document writes it hyphenated: kept


# -- gzip-compressed documents --------------------------------------------------


def test_a_compressed_document_reads_as_the_document_inside(tmp_path: Path, seeds_dir: Path) -> None:
    """"manual.pdf.gz", as Debian installs many documents: the same text, pages and title as
    the file inside, its content hash that of the file on disk (what the index tracks)."""
    import gzip

    from rag.loaders import content_hash, is_supported

    pdf = tmp_path / "manual.pdf"
    _make_pdf(pdf, ["The depot holds forty-two spare rotor blades.", "Crews train in Esquimalt harbour.",
                    "Patrols use Twin Otter aircraft in the Arctic."])
    packed = tmp_path / "manual.pdf.gz"
    packed.write_bytes(gzip.compress(pdf.read_bytes()))
    plain, inside = load_document(pdf), load_document(packed)
    assert inside.text == plain.text and inside.pages == plain.pages and inside.title == plain.title
    assert len(inside.pages) == 3
    assert inside.content_hash == content_hash(packed.read_bytes()) != plain.content_hash
    text = tmp_path / "notes.TXT.GZ"
    text.write_bytes(gzip.compress((seeds_dir / CDAI).read_bytes()))
    assert load_document(text).text == load_document(seeds_dir / CDAI).text
    assert is_supported(packed) and is_supported(text) and not is_supported(tmp_path / "page.5.gz")


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("truncated.pdf.gz", lambda: __import__("gzip").compress(b"%PDF-1.4\n" + bytes(range(256)) * 64
                                                           + __import__("os").urandom(20000))[:8000], "gzip"),
    ("not-gzip.txt.gz", lambda: b"plain text that was never compressed", "gzip"),
    ("empty-inside.txt.gz", lambda: __import__("gzip").compress(b"   \n"), "empty"),
])
def test_a_bad_compressed_document_is_a_loader_error_naming_it(tmp_path: Path, name: str, content, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(LoaderError) as err:
        load_document(path)
    assert name in str(err.value) and reason in str(err.value)


def test_a_compressed_document_that_unpacks_too_far_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    import rag.loaders as loaders

    path = tmp_path / "bomb.txt.gz"
    path.write_bytes(gzip.compress(b"The depot holds spare rotor blades. " * 40000))  # 1.4 MB from 5 kB
    assert len(path.read_bytes()) < 10_000
    monkeypatch.setattr(loaders, "MAX_UNPACKED_BYTES", 1_000_000)
    with pytest.raises(LoaderError, match="unpacks to more than 1 MB"):
        load_document(path)
    monkeypatch.setattr(loaders, "MAX_UNPACKED_BYTES", 2_000_000)
    assert "rotor blades" in load_document(path).text


def test_a_compressed_file_of_an_unsupported_kind_names_its_kind(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "ssh_config.5.gz"
    path.write_bytes(gzip.compress(b".TH SSH_CONFIG 5\n.SH NAME\nssh_config"))
    with pytest.raises(UnsupportedFormatError, match=r"'\.5\.gz'.*compressed"):
        load_document(path)
