"""Effect of PDF text extraction and cleaning on answers over the PDF corpora of the collection.

    python benchmarks/pdf_cleaning.py            # the PDF corpora of the test split
    python benchmarks/pdf_cleaning.py --split tune

Three ways of reading the same PDFs, each indexed and answered with the shipped models:

- ``pypdf-raw``: pypdf's text, pages kept as extracted (the loader before PDFium);
- ``pdfium-raw``: PDFium's text, pages kept as extracted (lines, running heads, page numbers);
- ``pdfium-clean``: PDFium's text through :func:`rag.cleaning.strip_page_furniture` (shipped).

Questions whose evidence no longer verifies against a variant's text are reported, not scored.
Writes benchmarks/results/pdf_cleaning.json.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import COLLECTION_KEYS as KEYS  # noqa: E402
from common import collection_figures, table, write  # noqa: E402

import rag.loaders as loaders  # noqa: E402
from rag.collection import load_collection  # noqa: E402


def _pypdf_raw(path: Path, data: bytes) -> tuple[list[str], str | None]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(io.BytesIO(data)).pages], None


def _pdfium_raw(path: Path, data: bytes) -> tuple[list[str], str | None]:
    shipped = loaders.strip_page_furniture
    loaders.strip_page_furniture = lambda pages: [p.replace("\r\n", "\n") for p in pages]  # type: ignore[assignment]
    try:
        return SHIPPED(path, data)
    finally:
        loaders.strip_page_furniture = shipped  # type: ignore[assignment]


SHIPPED = loaders.LOADERS[".pdf"]
VARIANTS = {"pypdf-raw": _pypdf_raw, "pdfium-raw": _pdfium_raw, "pdfium-clean": SHIPPED}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("tune", "test"))
    args = parser.parse_args()
    pdf_corpora = [c.name for c in load_collection() if any(d.endswith(".pdf") for d in c.split)]
    rows: list[dict[str, Any]] = []
    for name, loader in VARIANTS.items():
        loaders.LOADERS[".pdf"] = loader
        for corpus in pdf_corpora:
            with tempfile.TemporaryDirectory() as cache:
                rows.append({"variant": name, "corpus": corpus,
                             **collection_figures(args.split, [corpus], Path(cache))})
    loaders.LOADERS[".pdf"] = SHIPPED
    print(table(rows, ["variant", "corpus", *KEYS, "unverifiable_evidence"]))
    path = write("pdf_cleaning", {"split": args.split, "corpora": pdf_corpora, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
