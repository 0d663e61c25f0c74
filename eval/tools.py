"""Helpers for writing QA sets: show a document as rag loads it, and check a QA file.

    python eval/tools.py show eval/corpora/glpk/graphs.pdf        # text with page markers
    python eval/tools.py check eval/qa/glpk.jsonl eval/corpora/glpk

``check`` verifies every evidence quote against the loaded text (and its page, when
the item gives one) and prints one line per problem; it exits 1 if there is any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.evaluation import dataset_errors, load_qa  # noqa: E402
from rag.loaders import load_document  # noqa: E402


def show(path: str) -> None:
    doc = load_document(path)
    for span in doc.pages:
        print(f"\n===== page {span.page} =====")
        print(doc.text[span.start:span.end])


def check(qa: str, corpus: str) -> int:
    items = load_qa(qa)
    errors = dataset_errors(items, Path(corpus))
    for e in errors:
        print(json.dumps(e, ensure_ascii=False))
    answerable = sum(i.answerable for i in items)
    print(f"{len(items)} questions ({answerable} answerable, {len(items) - answerable} unanswerable); "
          f"{len(errors)} problems", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "show":
        show(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
