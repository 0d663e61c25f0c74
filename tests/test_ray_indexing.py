"""Index builds on a real local Ray runtime (Ray Data, 2 CPUs): the same index as the plain
indexer, incremental updates that re-read only what changed, bad files skipped, and clear
errors for a missing extra or a cluster that is not there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.indexing import index_folder
from rag.store import IndexStore

ROOT = Path(__file__).resolve().parent.parent
ray = pytest.importorskip("ray", reason="the 'scale' extra is not installed (pip install -e '.[scale]')")


@pytest.fixture(scope="module")
def workers() -> Iterator[object]:
    from rag.ray_indexing import RayWorkers

    w = RayWorkers("all-MiniLM-L6-v2", workers=2)
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
    yield w
    w.close()
    assert not ray.is_initialized()


class Counting:
    """The Ray workers, counting the files parsed and the texts embedded through them."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.parsed: list[str] = []
        self.embedded = 0

    def parse(self, jobs, chunk_size, chunk_overlap, progress):  # noqa: ANN001, ANN201
        self.parsed += [j.rel for j in jobs]
        return self.inner.parse(jobs, chunk_size, chunk_overlap, progress)  # type: ignore[attr-defined]

    def embed(self, texts, progress):  # noqa: ANN001, ANN201
        self.embedded += len(texts)
        return self.inner.embed(texts, progress)  # type: ignore[attr-defined]


def test_ray_build_is_the_plain_build(tmp_path: Path, seeds_dir: Path, embedder, workers) -> None:  # noqa: ANN001
    plain = index_folder(seeds_dir, tmp_path / "plain", embedder, show_progress=False)
    counting = Counting(workers)
    report = index_folder(seeds_dir, tmp_path / "ray", embedder, show_progress=False, workers=counting)
    assert sorted(counting.parsed) == sorted(p.name for p in seeds_dir.glob("*.txt"))
    assert counting.embedded == report.embedded + report.sentences_embedded == plain.embedded + plain.sentences_embedded
    a, b = IndexStore.load(tmp_path / "plain"), IndexStore.load(tmp_path / "ray")
    assert [c.to_dict() for c in a.chunks] == [c.to_dict() for c in b.chunks]
    rows = list(range(len(a.chunks)))
    assert np.allclose(a.vectors(rows), b.vectors(rows), atol=1e-6)
    assert a.manifest["files"] == b.manifest["files"]
    # The stored sentence vectors too (float16 on disk).
    assert len(a.sentences) == len(b.sentences) > len(a.chunks)
    assert a.sentences.keys.tolist() == b.sentences.keys.tolist()
    assert np.allclose(a.sentences.vectors.astype(np.float32), b.sentences.vectors.astype(np.float32), atol=2e-3)


def test_ray_update_rereads_only_the_edited_file_and_skips_bad_ones(tmp_path: Path, seeds_dir: Path, embedder,
                                                                     workers) -> None:  # noqa: ANN001
    folder = tmp_path / "docs"
    shutil.copytree(seeds_dir, folder)
    index_folder(folder, tmp_path / "index", embedder, show_progress=False, workers=workers)
    edited = sorted(folder.glob("*.txt"))[0]
    edited.write_text(edited.read_text(encoding="utf-8") + "\n\nA closing note added for the update test.\n",
                      encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF at all")
    counting = Counting(workers)
    report = index_folder(folder, tmp_path / "index", embedder, show_progress=False, workers=counting)
    assert sorted(counting.parsed) == sorted([edited.name, "broken.pdf"])
    assert report.updated == [edited.name] and len(report.unchanged) == 1
    assert "broken.pdf" in report.skipped and report.skipped["broken.pdf"]
    # Only the changed chunk(s) and the new sentence were embedded, not the whole corpus again.
    assert 0 < counting.embedded < 10
    store = IndexStore.load(tmp_path / "index")
    assert any("closing note added for the update test" in c.text for c in store.chunks)


def test_ray_build_into_a_milvus_store(tmp_path: Path, seeds_dir: Path, embedder, workers,  # noqa: ANN001
                                       seed_store: IndexStore) -> None:
    pytest.importorskip("pymilvus", reason="the 'scale' extra is not installed")
    from rag.milvus_store import MilvusStore
    from rag.retrieval import Retriever
    from rag.store import StoreTarget, open_store

    counting = Counting(workers)
    report = index_folder(seeds_dir, tmp_path / "milvus", embedder, show_progress=False, workers=counting,
                          store=StoreTarget("milvus"))
    assert counting.embedded == report.embedded + report.sentences_embedded > 0
    milvus = open_store(tmp_path / "milvus", model_id=embedder.model_id, dim=embedder.dim)
    assert isinstance(milvus, MilvusStore) and milvus.count() == report.chunks
    plain = Retriever(seed_store, embedder)
    for q in ("Chatham House rule", "Defence Production Action Plan", "ammunition production capacity"):
        assert Retriever(milvus, embedder).search(q, 1)[0].chunk.id == plain.search(q, 1)[0].chunk.id


def test_cli_ray_index_answers_as_the_shipped_index(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_SHOW_PROGRESS": "0"}
    rag = [sys.executable, "-m", "rag.cli"]
    out = subprocess.run([*rag, "index", "seeds", "--index-dir", str(tmp_path / "D2"), "--ray"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 added" in out.stdout
    found = []
    for index in (str(tmp_path / "D2"), "index"):
        res = subprocess.run([*rag, "search", "Chatham House rule", "--index-dir", index, "--json"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        found.append([(h["source"], h["char_start"]) for h in json.loads(res.stdout)["hits"][:5]])
    assert len(found[0]) == 5 and found[0] == found[1]


def test_a_cluster_that_is_not_there_is_a_clear_error() -> None:
    from rag.ray_indexing import check_address

    with pytest.raises(ConfigError, match="no Ray cluster answers at 127.0.0.1:9"):
        check_address("127.0.0.1:9", timeout_s=2)
    with pytest.raises(ConfigError, match="not a Ray cluster address"):
        check_address("just-a-name")
    # The command checks before it connects: a clear error at once, not minutes of retries.
    res = subprocess.run([sys.executable, "-m", "rag.cli", "index", "seeds", "--index-dir", "/nonexistent/never-made",
                          "--ray-address", "127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode != 0 and "no Ray cluster answers at 127.0.0.1:9" in res.stderr
