"""The PDF-cleaning and chunking line rules, each swept against neighbouring values on tune.

    python benchmarks/text_rules.py                 # every rule
    python benchmarks/text_rules.py --rules EDGE_LINES

One constant at a time is set to another value, the tune questions of the corpora it touches
are answered over indexes built afresh from the text it gives (the shipped models, which were
fitted on the shipped text), and the collection's measures are compared with the shipped value's
in the same run:

- ``rag.cleaning.EDGE_LINES``: how many lines at a PDF page's top and bottom are checked for
  running heads and feet (PDF corpora);
- ``rag.cleaning.FURNITURE_PAGES``: on how many pages' edges a line must recur to be furniture
  (PDF corpora);
- ``rag.cleaning.FURNITURE_MAX_CHARS``: furniture is shorter than this (PDF corpora);
- ``rag.chunking.HEADING_MAX_WORDS``: a one-line paragraph of at most this many words, not ending
  like a sentence, starts a new chunk as a heading (every corpus).

Questions whose evidence no longer verifies against a value's text are counted
(``unverifiable_evidence``: text the rule lost or garbled), not scored.  Tune split only: the
test split is never read.  Writes benchmarks/results/text_rules.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import COLLECTION_KEYS as KEYS  # noqa: E402
from common import collection_figures, table, write  # noqa: E402

import rag.chunking as chunking  # noqa: E402
import rag.cleaning as cleaning  # noqa: E402
from rag.collection import load_collection  # noqa: E402

#: rule -> (module, values tried besides the shipped one, corpora: "pdf" or "all")
RULES: dict[str, tuple[Any, tuple[int, ...], str]] = {
    "EDGE_LINES": (cleaning, (2, 4), "pdf"),
    "FURNITURE_PAGES": (cleaning, (2, 5), "pdf"),
    "FURNITURE_MAX_CHARS": (cleaning, (60, 240), "pdf"),
    "HEADING_MAX_WORDS": (chunking, (6, 20), "all"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated rules to sweep")
    args = parser.parse_args()
    collection = load_collection()
    pdf = [c.name for c in collection if any(d.endswith(".pdf") and s == "tune" for d, s in c.split.items())]
    every = [c.name for c in collection if c.items("tune")]
    rows: list[dict[str, Any]] = []
    shipped_done: set[str] = set()
    for rule in args.rules.split(","):
        module, tried, scope = RULES[rule]
        corpora = pdf if scope == "pdf" else every
        shipped = getattr(module, rule)
        values = tried if scope in shipped_done else (shipped, *tried)
        for value in values:
            setattr(module, rule, value)
            start = time.perf_counter()
            try:
                # The shipped value's indexes are the ones `rag eval` keeps; the others are built afresh.
                with tempfile.TemporaryDirectory() as cache:
                    result = collection_figures("tune", corpora, Path(cache) if value != shipped else None)
            finally:
                setattr(module, rule, shipped)
            rows.append({"rule": rule, "value": value, "shipped": value == shipped, "corpora": scope,
                         **result, "seconds": round(time.perf_counter() - start)})
            print(table(rows[-1:], ["rule", "value", "shipped", "corpora", *KEYS, "unverifiable_evidence"]), flush=True)
        shipped_done.add(scope)
    print(table(rows, ["rule", "value", "shipped", "corpora", *KEYS, "unverifiable_evidence"]))
    path = write("text_rules", {"split": "tune", "pdf_corpora": pdf, "all_corpora": len(every),
                                "shipped": {r: getattr(m, r) for r, (m, _, _) in RULES.items()}, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
