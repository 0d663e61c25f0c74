"""Read files into :class:`~rag.types.Document` objects.

Supported: ``.txt``, ``.md``/``.markdown``, ``.html``/``.htm``, ``.pdf``, ``.docx``, and any
of them gzip-compressed (``manual.pdf.gz``, as Debian installs many documents under
``/usr/share/doc``).  Each loader returns the cleaned text and its page spans; titles come from the
folder's ``catalog.json`` when it names the file, else from the file itself.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from rag.cleaning import clean_text, strip_page_furniture
from rag.errors import LoaderError, UnsupportedFormatError
from rag.types import Document, PageSpan

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.json"
_PAGE_SEP = "\n\n"

RawPages = list[str]


def content_hash(data: bytes) -> str:
    """The sha256 hex digest that identifies a file's content."""
    return hashlib.sha256(data).hexdigest()


def _check_not_binary(path: Path, data: bytes) -> None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LoaderError(path, "is UTF-16 text; re-save it as UTF-8 (another text encoding)")
    sample = data[:8192]
    if b"\x00" in sample:
        raise LoaderError(path, "looks like a binary file, not text (it contains NUL bytes); "
                          "check the file or give it its real extension")
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    if sample and controls / len(sample) > 0.05:
        raise LoaderError(path, "looks like a binary file, not text; check the file or give it its real extension")


def _decode_text(path: Path, data: bytes) -> str:
    _check_not_binary(path, data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoaderError(
            path, f"is not UTF-8 text (invalid byte at offset {exc.start}); re-save it as UTF-8"
        ) from None


def _load_text(path: Path, data: bytes) -> tuple[RawPages, str | None]:
    text = _decode_text(path, data)
    return [text], None


def _load_markdown(path: Path, data: bytes) -> tuple[RawPages, str | None]:
    text = _decode_text(path, data)
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return [text], (m.group(1).strip() if m else None)


_HTML_DROP = ("script", "style", "noscript", "template", "svg", "nav", "footer", "header", "form")
_HTML_BLOCKS = ("p", "div", "section", "article", "li", "tr", "br", "h1", "h2", "h3", "h4",
                "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dd", "dt", "figcaption")


def _load_html(path: Path, data: bytes) -> tuple[RawPages, str | None]:
    from bs4 import BeautifulSoup

    _check_not_binary(path, data)
    soup = BeautifulSoup(data, "html.parser")
    title = None
    if soup.title and soup.title.get_text(strip=True):
        title = soup.title.get_text(" ", strip=True)
    h1 = soup.find("h1")
    if title is None and h1 is not None:
        title = h1.get_text(" ", strip=True)
    for tag in soup(_HTML_DROP):
        tag.decompose()
    body = soup.body or soup
    for tag in body.find_all(_HTML_BLOCKS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    raw = body.get_text()
    paragraphs = [re.sub(r"[ \t\r\f\v\n]+", " ", p).strip() for p in re.split(r"\n\s*\n", raw)]
    return ["\n\n".join(p for p in paragraphs if p)], title


def _load_pdf(path: Path, data: bytes) -> tuple[RawPages, str | None]:
    # PDFium (pypdfium2) rather than pypdf: pypdf drops the spaces of justified text set
    # with tight spacing ("theyinstallyourpackage;theonlydifference", measured on Debian's
    # maint-guide and policy PDFs) and mangles ligatures of Type 1 fonts; PDFium does neither.
    import pypdfium2 as pdfium

    if not data.startswith(b"%PDF"):
        raise LoaderError(path, "is not a PDF (no %PDF header); the file is corrupt or misnamed")
    if b"%%EOF" not in data[-2048:]:
        raise LoaderError(path, "is a corrupt PDF that cannot be read (it ends before its end-of-file "
                          "marker: truncated in transfer?)")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise LoaderError(path, "is an encrypted PDF; save an unencrypted copy and index that") from None
        raise LoaderError(path, f"is a corrupt PDF that cannot be read ({exc})") from None
    try:
        pages = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        meta_title = (pdf.get_metadata_dict().get("Title") or "").strip() or None
    except pdfium.PdfiumError as exc:
        raise LoaderError(path, f"is a corrupt PDF that cannot be read ({exc})") from None
    finally:
        pdf.close()
    if not pages:
        raise LoaderError(path, "is a PDF with no pages")
    if not any(p.strip() for p in pages):
        raise LoaderError(path, "is a PDF with no text layer (probably scanned images); run OCR on it first")
    return strip_page_furniture(pages), meta_title


def _load_docx(path: Path, data: bytes) -> tuple[RawPages, str | None]:
    import docx

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise LoaderError(path, "is not a valid .docx (not a zip package); the file is corrupt or misnamed")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - python-docx raises KeyError, ValueError, ...
        raise LoaderError(path, f"is not a valid .docx ({exc.__class__.__name__}); open and re-save it in Word") from None
    paragraphs: list[str] = []
    heading: str | None = None
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        if heading is None and (style.startswith("Heading") or style == "Title"):
            heading = text
        paragraphs.append(text)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                paragraphs.append(" | ".join(cells))
    title = (document.core_properties.title or "").strip() or heading
    return ["\n\n".join(paragraphs)], title


LOADERS: dict[str, Callable[[Path, bytes], tuple[RawPages, str | None]]] = {
    ".txt": _load_text,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
}

SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(sorted(LOADERS))
#: A supported file compressed with gzip ("manual.pdf.gz") is read as the file inside.
GZIP = ".gz"
#: The supported kinds, as error messages list them.
SUPPORTED_TEXT = f"{', '.join(SUPPORTED_SUFFIXES)} (and each compressed, as {GZIP})"
#: What a gzip-compressed document may unpack to: twice the default upload limit, so a small
#: file that unpacks to gigabytes stops with a clear error instead of filling memory.
MAX_UNPACKED_BYTES = 200 * 1000 * 1000


def split_suffix(name: str) -> tuple[str, str]:
    """``name`` as (stem, suffix), the suffix saying how it is read: ("manual", ".pdf.gz") for
    "manual.pdf.gz", ("notes", ".txt") for "notes.txt"."""
    p = Path(name)
    if p.suffix.lower() == GZIP and Path(p.stem).suffix:
        inner = Path(p.stem)
        return inner.stem, inner.suffix + p.suffix
    return p.stem, p.suffix


def reading_suffix(path: Path) -> str:
    """The suffix of the document's format: ".pdf" for "manual.pdf" and for "manual.pdf.gz"."""
    suffix = split_suffix(path.name)[1].lower()
    return suffix[: -len(GZIP)] if suffix.endswith(GZIP) and suffix != GZIP else suffix


def is_supported(path: Path) -> bool:
    """Whether ``path`` has an extension rag can read (gzip-compressed or not)."""
    return reading_suffix(path) in LOADERS


def _gunzip(path: Path, data: bytes) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as packed:
            while part := packed.read(1 << 20):  # to the end: a truncated stream fails there
                size += len(part)
                if size > MAX_UNPACKED_BYTES:
                    raise LoaderError(path, f"unpacks to more than {MAX_UNPACKED_BYTES / 1e6:.0f} MB")
                parts.append(part)
    except (OSError, EOFError, zlib.error) as exc:
        raise LoaderError(path, f"is not a readable gzip file ({exc})") from None
    return b"".join(parts)


def read_catalog(folder: Path) -> dict[str, dict[str, str]]:
    """The folder's ``catalog.json`` (file name -> {title, publisher, date, ...}), or {}."""
    path = folder / CATALOG_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def load_document(
    path: str | Path,
    *,
    source: str | None = None,
    catalog: dict[str, dict[str, str]] | None = None,
    data: bytes | None = None,
) -> Document:
    """Load one file into a :class:`Document`.

    ``source`` is the name stored in citations (default: the file name);
    ``catalog`` maps file names to metadata (default: the file's folder's catalog.json);
    ``data`` is the file's content when it was read already (elsewhere: a worker of a
    cluster gets the bytes, not the path).
    Raises :class:`UnsupportedFormatError` or :class:`LoaderError` naming the file.
    """
    path = Path(path)
    suffix = reading_suffix(path)
    if suffix not in LOADERS:
        shown = split_suffix(path.name)[1].lower()
        raise UnsupportedFormatError(
            path, f"unsupported file type '{shown or '(none)'}'; supported: {SUPPORTED_TEXT}"
        )
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LoaderError(path, f"cannot be read ({exc.strerror or exc})") from None
    file_bytes = data  # the file's own bytes: what its content hash (and so the index) tracks
    if path.name.lower().endswith(GZIP):
        data = _gunzip(path, data)
    if not data.strip():
        raise LoaderError(path, "is empty; add text to it or remove it from the folder")
    raw_pages, file_title = LOADERS[suffix](path, data)

    texts: list[str] = []
    spans: list[PageSpan] = []
    offset = 0
    for number, raw in enumerate(raw_pages, start=1):
        cleaned = clean_text(raw)
        if not cleaned:
            continue
        if texts:
            if cleaned[:1].islower() and re.search(r"[a-z]-$", texts[-1]):
                # A word hyphenated across the page break: "gener-" + "ational".
                texts[-1] = texts[-1][:-1]
                offset -= 1
                sep = ""
            else:
                sep = _page_separator(texts[-1], cleaned)
            texts.append(sep)
            offset += len(sep)
        texts.append(cleaned)
        spans.append(PageSpan(number, offset, offset + len(cleaned)))
        offset += len(cleaned)
    text = "".join(texts)
    if not text.strip():
        raise LoaderError(path, "holds no text after extraction")
    # Separators belong to the page before them, so every character maps to a page.
    spans = [
        PageSpan(s.page, s.start, spans[i + 1].start if i + 1 < len(spans) else len(text))
        for i, s in enumerate(spans)
    ]
    spans[0] = PageSpan(spans[0].page, 0, spans[0].end)

    digest = content_hash(file_bytes)
    name = source or path.name
    if catalog is None:
        catalog = read_catalog(path.parent)
    entry = catalog.get(path.name, {})
    # One line: a title is shown in single-line places (markers, source lists, prompts).
    title = " ".join(str(entry.get("title") or file_title or "").split()) or _title_from_name(path)
    metadata = {k: str(v) for k, v in entry.items() if k != "title"}
    return Document(
        id=digest[:16], source=name, title=title, text=text, pages=tuple(spans),
        content_hash=digest, metadata=metadata,
    )


def _page_separator(previous: str, following: str) -> str:
    """A sentence cut by a page break is joined with a space, else pages are paragraphs."""
    if following[:1].islower() and not re.search(r"[.!?:;\"”’)\]]$", previous):
        return " "
    return _PAGE_SEP


def _title_from_name(path: Path) -> str:
    return re.sub(r"[-_]+", " ", split_suffix(path.name)[0]).strip().capitalize() or path.name
