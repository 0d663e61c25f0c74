"""Clean PDF text: running heads and feet, page numbers and TOC leaders go; headings stand alone."""

from __future__ import annotations

from pathlib import Path

from rag.cleaning import strip_page_furniture
from rag.evaluation import evidence_pages
from rag.loaders import load_document
from rag.sentences import sentence_spans

BODY = [
    ("3.1 Invoking the decoder",
     "The decoder reads a definitions file and a data file. It prints the decoded value on standard "
     "output and exits with status zero when the data matches the definitions exactly."),
    ("3.2 Exit codes",
     "A malformed definitions file makes the decoder exit with status two. Data that does not match "
     "the definitions gives status one, and the offending byte offset is printed on standard error."),
    ("3.3 Limits",
     "Values longer than sixty-four kilobytes are refused. The limit protects small devices from "
     "exhausting their memory while a long value is decoded in place."),
    ("3.4 Versions",
     "Since version 4.12 the decoder accepts indefinite lengths. Older versions reject them with a "
     "message naming the first indefinite length they meet in the input."),
]


def _manual(path: Path) -> None:
    """A four-page manual with a running head, a running foot and a page number on every page,
    set with fpdf2 so that its text layer is real."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(False)
    for n, (heading, text) in enumerate(BODY, start=1):
        pdf.add_page()
        pdf.set_font("Helvetica", size=9)
        pdf.set_xy(10, 8)
        pdf.cell(0, 5, f"Chapter 3: Utilities {n + 6}")
        pdf.set_xy(10, 30)
        pdf.set_font("Helvetica", "B", size=12)
        pdf.cell(0, 8, heading)
        pdf.set_xy(10, 42)
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(120, 6, text)
        pdf.set_font("Helvetica", size=9)
        pdf.set_xy(10, 280)
        pdf.cell(0, 5, "Decoder Reference Manual, Release 4.12")
        pdf.set_xy(190, 286)
        pdf.cell(0, 5, str(n + 6))
    pdf.output(str(path))


def test_running_heads_feet_and_page_numbers_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    _manual(path)
    doc = load_document(path)
    assert "Chapter 3: Utilities" not in doc.text
    assert "Decoder Reference Manual, Release" not in doc.text
    for n in range(7, 11):
        assert f"\n{n}\n" not in f"\n{doc.text}\n"
    # The body survives whole, each quote on its own page.
    for page, (_, text) in enumerate(BODY, start=1):
        first = text.split(". ")[0] + "."
        assert first in doc.text
        assert evidence_pages(doc, first) == [page]


def test_headings_never_glue_onto_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "manual.pdf"
    _manual(path)
    doc = load_document(path)
    sentences = [doc.text[s:e] for s, e in sentence_spans(doc.text)]
    for heading, text in BODY:
        assert heading in sentences, heading
        assert text.split(". ")[0] + "." in sentences
        assert not any(s.startswith(heading) and s != heading for s in sentences)


def test_furniture_needs_repetition_not_a_phrase_list() -> None:
    pages = [f"Annual Review {n}\nThe fleet grew by {n} ships this year.\nIt was a calm year.\n{n}"
             for n in range(1, 5)]
    out = strip_page_furniture(pages)
    assert all("Annual Review" not in p for p in out)
    assert all(p.startswith(f"The fleet grew by {n} ships") for n, p in enumerate(out, start=1))
    # A line that appears on one page only is text, whatever it says.
    single = strip_page_furniture(["Annual Review 1\nThe fleet grew.", "Other text here.\nMore text."])
    assert single[0].startswith("Annual Review 1")


def test_wrapped_lines_are_joined_and_line_end_hyphens_removed() -> None:
    page = ("The decoder accepts indefinite lengths when the definitions al-\n"
            "low them, and it reports the first offending offset other-\n"
            "wise. This line is long enough to count as a full line of text.\n"
            "Short last line.\n"
            "Next paragraph starts here and runs on for a while longer.")
    out = strip_page_furniture([page, page])[0]
    assert "definitions allow them" in out and "offset otherwise." in out
    assert "\n" not in out.split("Short last line.")[0]
    assert "Short last line.\n\nNext paragraph" in out


def test_toc_leader_lines_are_dropped() -> None:
    page = "Contents\n1 Introduction ........................ 1\n2 Usage . . . . . . . . . . . 4\nBody text follows."
    out = strip_page_furniture([page])[0]
    assert "...." not in out and ". . ." not in out and "Body text follows." in out


def test_pdfium_hyphen_marks_are_resolved_by_the_documents_own_spelling() -> None:
    # PDFium writes U+FFFE where a line ends in a hyphen, whether the typesetter's or the author's.
    pages = [
        "Check out the sources from the reposi\ufffe\ntory. A repository holds every release.\n"
        "Set the variable to a non\ufffe\nempty value. A non-empty value turns it on.",
        "Files are read as UTF\ufffe\n8 text, even on Debian\ufffe\nbased systems. Debian keeps based builds.\n"
        "The decoder also handles charac\ufffeters in names, and the network\ufffe\nmounted disks of a "
        "network where disks are mounted late.",
    ]
    out = " ".join(strip_page_furniture(pages))
    assert "\ufffe" not in out
    assert "from the repository." in out          # the document spells it whole elsewhere
    assert "to a non-empty value" in out          # ... and hyphenated here
    assert "as UTF-8 text" in out                 # a hyphen before a digit stays
    assert "on Debian-based systems" in out       # two words the document uses on their own
    assert "handles characters in names" in out   # a word neither way, halves not words: joined
    assert "the network-mounted disks" in out
