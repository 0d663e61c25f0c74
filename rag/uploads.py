"""Bring user-supplied files into the corpus folder safely.

File names from a browser are untrusted: they may hold path separators, ``..``,
NUL bytes, or be absurdly long.  ``safe_name`` keeps only a plain base name, so
a stored file can never land outside the corpus folder.
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from pathlib import Path

from rag.errors import LoaderError
from rag.loaders import SUPPORTED_TEXT, is_supported, load_document, split_suffix

MAX_NAME = 120
#: Largest file accepted by default (bytes); ``Settings.max_upload_mb`` overrides it.
DEFAULT_MAX_BYTES = 100 * 1000 * 1000


def safe_name(name: str) -> str:
    """A file name with no directory part, no control characters, at most 120 characters.

    Raises :class:`ValueError` when nothing usable is left.
    """
    name = unicodedata.normalize("NFKC", name or "").replace("\x00", "")
    name = re.split(r"[\\/]", name)[-1]  # drop any directory part, POSIX or Windows
    name = re.sub(r"[\x00-\x1f\x7f<>:\"|?*]", "_", name).strip().strip(".")
    name = re.sub(r"\s+", " ", name)
    if not name or set(name) <= {"_", " ", "."}:
        raise ValueError("the file name is empty after removing unsafe characters; rename the file")
    stem, suffix = split_suffix(name)  # "manual.pdf.gz" keeps ".pdf.gz" whole
    suffix = suffix[:11]
    stem = stem[:MAX_NAME - len(suffix)].rstrip(" .") or "document"
    return stem + suffix


def add_to_corpus(source: str | Path, corpus_dir: str | Path, name: str | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Check that ``source`` loads, then copy it into ``corpus_dir`` under a safe name.

    A file larger than ``max_bytes`` or that does not load raises :class:`LoaderError`
    and nothing is copied.  An existing file of the same name is not overwritten: a
    numbered name is used.  The staging copy is created anew (never through an existing
    file or link) and removed on any error.
    """
    source = Path(source)
    corpus = Path(corpus_dir).resolve()
    target_name = safe_name(name or source.name)
    if not is_supported(Path(target_name)):
        raise LoaderError(target_name, f"unsupported file type; supported: {SUPPORTED_TEXT}")
    size = source.stat().st_size
    if size > max_bytes:
        raise LoaderError(target_name, f"the file is {size / 1e6:.1f} MB; the upload limit is "
                                       f"{max_bytes / 1e6:.1f} MB (setting RAG_MAX_UPLOAD_MB)")
    corpus.mkdir(parents=True, exist_ok=True)
    # Load from a copy named like the target so the loader sees the right extension.
    staging = corpus / f".upload-{os.getpid()}-{secrets.token_hex(4)}-{target_name}"
    # O_EXCL | O_NOFOLLOW: a name planted in the folder (a file or a link) is never written through.
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > max_bytes:  # the file grew while it was copied
                    raise LoaderError(target_name, f"the upload limit is {max_bytes / 1e6:.1f} MB")
                out.write(chunk)
        try:
            load_document(staging, source=target_name, catalog={})
        except LoaderError as exc:
            raise LoaderError(target_name, exc.reason) from None
        target = corpus / target_name
        n = 1
        while target.exists() or target.is_symlink():
            stem, suffix = split_suffix(target_name)
            target = corpus / f"{stem} ({n}){suffix}"
            n += 1
        if target.resolve().parent != corpus:  # defence in depth: never outside the corpus
            raise ValueError(f"refusing to write outside {corpus}")
        staging.replace(target)
        return target
    finally:
        staging.unlink(missing_ok=True)  # ours (created above); gone already after the rename
