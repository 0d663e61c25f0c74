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

from common import table, write  # noqa: E402

import rag.loaders as loaders  # noqa: E402
from rag.collection import evaluate_collection, load_collection  # noqa: E402
from rag.evaluation import DatasetError  # noqa: E402

KEYS = ("questions", "recall@5", "citation_precision", "citation_recall", "abstention_rate",
        "false_abstention_rate", "page_accuracy")


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
                try:
                    summary = evaluate_collection(args.split, corpora=[corpus], cache_dir=Path(cache))
                except DatasetError as exc:  # most evidence does not verify against this text
                    rows.append({"variant": name, "corpus": corpus, "note": str(exc)[:120]})
                    continue
            m = summary["configs"]["all"]["overall"]
            rows.append({"variant": name, "corpus": corpus, **{k: m[k] for k in KEYS},
                         "unverifiable_evidence": len(summary["dataset_errors"])})
    loaders.LOADERS[".pdf"] = SHIPPED
    print(table(rows, ["variant", "corpus", *KEYS, "unverifiable_evidence"]))
    path = write("pdf_cleaning", {"split": args.split, "corpora": pdf_corpora, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
