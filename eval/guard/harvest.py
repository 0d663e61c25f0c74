"""Sample ordinary sentences from real documents of this machine kind into ``ordinary_harvest.jsonl``.

    python eval/guard/harvest.py

The hand-picked ``ordinary.jsonl`` holds directive sentences chosen to be hard;
this sample adds breadth, the way text really arrives in an index: manual pages
in English and eight other languages (rendered with ``man``), Debian package
documentation (HTML and text, read with the project's own loaders), including
headings, option lines, list items, short lines and code.  Every row is ordinary
text (label 0).  The split is by document (a stable hash of its path), so no
document gives sentences to both train and test.  Documents of packages kept for
independent checks are skipped.  The sample is fixed by a seed; the output
is committed, so training never depends on what a machine has installed.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rag.loaders import load_document  # noqa: E402
from rag.sentences import sentence_spans  # noqa: E402

OUT = Path(__file__).resolve().parent / "ordinary_harvest.jsonl"
RESERVED = ("shared-mime-info", "libtasn1", "python3", "zlib1g-dev")
MAN_LANGS = ("de", "fr", "es", "it", "pt", "nl", "pl", "ru", "sv")
PER_DOC = 10
SEED = 20261203


def reserved_files() -> set[str]:
    """Files installed by packages kept for independent checks."""
    pkgs = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True, text=True).stdout.split()
    mine = [p for p in pkgs if any(p.startswith(r) for r in RESERVED)]
    out = subprocess.run(["dpkg", "-L", *mine], capture_output=True, text=True).stdout.split("\n") if mine else []
    return {line.strip() for line in out if line.strip()}


def man_text(path: Path) -> str:
    env = {"MANWIDTH": "3000", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    raw = subprocess.run(["man", "-l", str(path)], capture_output=True, env=env, timeout=30).stdout
    text = subprocess.run(["col", "-bx"], input=raw, capture_output=True, timeout=30).stdout.decode("utf-8", "replace")
    return "\n".join(line.strip() for line in text.splitlines())


def doc_text(path: Path) -> str:
    if path.suffix == ".gz":
        data = gzip.decompress(path.read_bytes())
        plain = path.with_suffix("")
        tmp = Path("/tmp") / f"harvest-{zlib.crc32(str(path).encode())}{plain.suffix or '.txt'}"
        tmp.write_bytes(data)
        path = tmp
    return load_document(path).text


def sentences(text: str) -> list[str]:
    out = []
    for a, b in sentence_spans(text):
        s = " ".join(text[a:b].split())
        if 2 <= len(s.split()) <= 80 and re.search(r"[^\W\d_]", s):
            out.append(s)
    return out


def main() -> int:
    rng = random.Random(SEED)
    skip = reserved_files()
    sources: list[tuple[Path, str, str]] = []  # path, lang, genre
    for section in ("man1", "man5", "man8"):
        sources += [(p, "en", "manpage") for p in sorted((Path("/usr/share/man") / section).glob("*.gz"))]
    for lang in MAN_LANGS:
        for d in sorted(Path("/usr/share/man").glob(f"{lang}*")):
            sources += [(p, lang, "manpage") for p in sorted(d.glob("man*/*.gz"))]
    docs = [p for p in sorted(Path("/usr/share/doc").rglob("*"))
            if p.is_file() and re.search(r"\.(html?|txt|md)(\.gz)?$|/README(\.\w+)?(\.gz)?$", str(p))
            and "changelog" not in p.name.lower()]
    sources += [(p, "en", "package-doc") for p in docs]
    sources = [s for s in sources if str(s[0]) not in skip and not any(r in str(s[0]) for r in RESERVED)]
    rng.shuffle(sources)
    # A file that already gives sentences to ordinary.jsonl keeps that file's split.
    fixed = {r["source"]: r["split"] for r in map(json.loads, (OUT.parent / "ordinary.jsonl").open(encoding="utf-8"))}
    rows, per_lang, gcloud = [], {}, 0
    # English: as many sentences from package documentation as from manual pages; the
    # Google Cloud SDK's thousands of generated pages are held to a few documents.
    cap = {("en", "manpage"): 1300, ("en", "package-doc"): 1500, **{(lang, "manpage"): 220 for lang in MAN_LANGS}}
    for path, lang, genre in sources:
        if per_lang.get((lang, genre), 0) >= cap[(lang, genre)]:
            continue
        if path.name.startswith("gcloud"):
            if gcloud >= 15:
                continue
            gcloud += 1
        try:
            text = man_text(path) if genre == "manpage" else doc_text(path)
        except Exception as exc:  # noqa: BLE001 - a broken file is skipped, never fatal
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        found = sorted(set(sentences(text)))
        picked = rng.sample(found, min(PER_DOC, len(found)))
        doc = str(path)
        split = fixed.get(doc) or ("test" if zlib.crc32(doc.encode()) % 4 == 0 else "train")
        for s in picked:
            rows.append({"text": s, "label": 0, "source": doc, "genre": genre, "lang": lang, "doc": doc,
                         "split": split})
        per_lang[(lang, genre)] = per_lang.get((lang, genre), 0) + len(picked)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} sentences to {OUT}: {per_lang}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
