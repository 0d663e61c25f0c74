"""Index builds on Ray: files parsed and texts embedded by Ray Data on a cluster or locally.

    rag index FOLDER --ray                      # a local Ray runtime on this machine's cores
    rag index FOLDER --ray-address ADDRESS      # a running Ray cluster (host:6379 or ray://host:10001)

:class:`RayWorkers` is the :class:`rag.indexing.Workers` of an index build that runs on
Ray: the changed files' bytes go to the workers as rows of a Ray dataset, each worker
parses and chunks them with :func:`rag.indexing.parse_file`, and new chunk and sentence
texts are embedded by ``map_batches`` on actors that load the embedder once each.  The
driver keeps everything else (what changed, reuse of old vectors, the atomic write), so
an index built this way is the one the plain indexer builds.  The same code runs on a
laptop and on a cluster; a cluster's workers need this package and its bundled model
installed, not the documents (they get the bytes).  Ray is an optional dependency:
``pip install -e '.[scale]'``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.indexing import ParseJob, parse_file

#: Most texts per ``map_batches`` call: big enough to keep the embedder busy, small enough
#: that the work spreads evenly over the actors and a run shows progress.
BATCH = 256


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part used
    except ImportError as exc:
        raise ConfigError("--ray needs Ray Data, which is in the 'scale' extra: pip install -e '.[scale]'") from exc
    return ray


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """A clear error when nothing listens at a Ray cluster's ``address`` (``ray.init`` itself
    keeps retrying for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"'{address}' is not a Ray cluster address; give host:port (e.g. 10.0.0.5:6379) "
                          "or ray://host:10001")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                          "'ray start --head' on that machine, or use --ray for a local runtime") from None


class _Embed:
    """A Ray actor's embedder: made once per actor, then applied to batches of rows."""

    def __init__(self, model: str, batch_size: int, backend: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from rag.embeddings import get_embedder

        # One core per actor (num_cpus=1): more threads would fight the other actors for it.
        self.embedder = get_embedder(model, batch_size, backend, threads=1)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.embed_documents([str(t) for t in batch["text"]])
        return {"row": batch["row"], "vector": vectors}


class RayWorkers:
    """Parse and embed on Ray (see the module's documentation).

    ``address`` is a Ray cluster's address, or None for a local runtime with ``workers``
    processes (default: this machine's cores).  The embedder is named by the same
    settings as in :func:`rag.embeddings.get_embedder`, so every actor builds the same one.
    """

    def __init__(self, model: str, batch_size: int = 32, backend: str = "auto", *,
                 address: str | None = None, workers: int | None = None) -> None:
        self.ray = _ray()
        self.model, self.batch_size, self.backend = model, batch_size, backend
        self.workers = workers or (None if address else os.cpu_count() or 1)
        self._started = False
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                check_address(address)
                self.ray.init(address=address, **kwargs)
            else:
                self.ray.init(num_cpus=self.workers, **kwargs)
            self._started = True

    def _concurrency(self) -> int:
        if self.workers:
            return self.workers
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def parse(self, jobs: list[ParseJob], chunk_size: int, chunk_overlap: int,
              progress: bool) -> list[dict[str, Any]]:
        if not jobs:
            return []
        self._progress(progress)
        rows = [{"n": n, "rel": j.rel, "data": j.data, "catalog": j.catalog} for n, j in enumerate(jobs)]

        def one(row: dict[str, Any]) -> dict[str, Any]:
            job = ParseJob(str(row["rel"]), bytes(row["data"]), dict(row["catalog"]))
            return {"n": row["n"], "parsed": parse_file(job, chunk_size, chunk_overlap)}

        # One file per block, so files are parsed in parallel rather than one block at a time.
        ds = self.ray.data.from_items(rows, override_num_blocks=len(rows)).map(one)
        out = sorted(ds.take_all(), key=lambda r: r["n"])
        return [r["parsed"] for r in out]

    def embed(self, texts: list[str], progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        self._progress(progress)
        n = min(self._concurrency(), len(texts))  # no idle actors for a small update
        # Even shares: at least four batches per actor, so no actor waits on a long last one.
        batch = max(1, min(BATCH, -(-len(texts) // (4 * n))))
        ds = self.ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)],
                                      override_num_blocks=-(-len(texts) // batch))
        ds = ds.map_batches(_Embed, fn_constructor_kwargs={"model": self.model, "batch_size": self.batch_size,
                                                           "backend": self.backend},
                            batch_size=batch, compute=self.ray.data.ActorPoolStrategy(size=n), num_cpus=1,
                            batch_format="numpy")
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            rows.extend(int(r) for r in batch["row"])
            vectors.append(np.asarray(batch["vector"], dtype=np.float32))
        out = np.empty((len(texts), vectors[0].shape[1]), dtype=np.float32)
        out[np.array(rows)] = np.vstack(vectors)
        return out

    def _progress(self, on: bool) -> None:
        self.ray.data.DataContext.get_current().enable_progress_bars = on

    def close(self) -> None:
        """Stop the local Ray runtime this object started (a cluster is left running)."""
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
            self._started = False
