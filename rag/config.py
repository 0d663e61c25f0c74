"""One settings tree, read from ``RAG_*`` environment variables (nested with ``__``).

Example: ``RAG_RETRIEVAL__K=8`` or ``RAG_LLM__BACKEND=llama-cpp``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from rag.store import StoreTarget

#: The project root when running from a checkout; the default corpus and index live there.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathSettings(_Section):
    corpus_dir: Path = Field(
        PROJECT_ROOT / "seeds", description="Folder of documents to index (the default corpus)."
    )
    index_dir: Path = Field(
        PROJECT_ROOT / "index", description="Folder holding the persisted index."
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "rag",
        description="Where assembled model files (the bundled GGUF) are kept.",
    )


class ChunkingSettings(_Section):
    # 900/150: the best hybrid recall@5 (0.982) of the sweep 400–1600 characters on the seeds'
    # dev questions (benchmarks/results/retrieval_quality.json); 1200/200 ranks the right passage
    # first more often (recall@1 0.768 against 0.705) but finds it in the top 5 less (0.964), and
    # answers read the top 5.
    chunk_size: int = Field(
        900, ge=100, le=20000, description="Largest chunk, in characters (sentences are kept whole)."
    )
    chunk_overlap: int = Field(
        150, ge=0, le=5000, description="Characters of trailing whole sentences repeated in the next chunk."
    )


class EmbeddingSettings(_Section):
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="Embedding model: 'all-MiniLM-L6-v2' (bundled) or a local sentence-transformers folder.",
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Texts embedded per batch.")
    backend: str = Field(
        "auto", description="'onnx' (ONNX Runtime, no torch), 'onnx-int8' (the same, weights quantised to int8: "
        "faster, vectors at cosine ~0.99 to fp32), 'sentence-transformers', or 'auto' (onnx for the bundled model, "
        "sentence-transformers for a model folder).",
    )


class RetrievalSettings(_Section):
    # Passages per answer, the k the models are fitted at.  On the tune split (out of fold,
    # ``python benchmarks/answer_constants.py``) 3, 5 and 8 put evidence among the candidates of
    # 0.907, 0.957 and 0.966 of answerable questions; answered 0.854, 0.848, 0.860, near-topic
    # declined 0.727, 0.753, 0.740, off-topic 0.722, 0.750, 0.736: 5 comes closest to all targets.
    k: int = Field(5, ge=1, le=50, description="Passages given to the answer generator.")
    mode: str = Field("hybrid", description="'hybrid', 'dense' or 'lexical'.")


class StoreSettings(_Section):
    backend: str | None = Field(
        None, description="Where a new index is written: 'faiss' (files in the index folder) or 'milvus' "
        "(needs the 'scale' extra); default: where the index already is, else faiss.",
    )
    uri: str | None = Field(
        None, description="For 'milvus': a milvus-lite file (relative to the index folder; default milvus.db) "
        "or a Milvus server or cluster, e.g. http://host:19530.",
    )

    def target(self) -> "StoreTarget | None":
        """The engine to write to, or None to keep the index where it is."""
        from rag.store import StoreTarget

        if self.backend is None:
            return None if self.uri is None else StoreTarget("milvus", self.uri)
        return StoreTarget(self.backend, self.uri)


class LLMSettings(_Section):
    backend: str = Field(
        "extractive", description="Answer generator: 'extractive', 'llama-cpp' or 'openai'."
    )
    gguf_path: Path | None = Field(
        None, description="A GGUF file for 'llama-cpp'; default: the bundled Gemma 3 270M."
    )
    n_ctx: int = Field(4096, ge=512, le=131072, description="Context window for 'llama-cpp'.")
    max_tokens: int = Field(160, ge=16, le=4096, description="Most tokens an LLM may generate.")
    openai_model: str = Field("gpt-4o-mini", description="Model name for the 'openai' backend.")
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint (llama.cpp server, Ollama, vLLM); default: OpenAI."
    )
    openai_api_key: str | None = Field(
        None, description="API key for 'openai'; falls back to the OPENAI_API_KEY environment variable."
    )
    prompt_style: str = Field(
        "auto",
        description="'passages' (full numbered passages), 'evidence' (the best sentences only: for small "
        "models that copy long prompts) or 'auto' (evidence for the bundled Gemma, passages otherwise).",
    )
    timeout_s: float = Field(60.0, gt=0, le=600, description="Seconds before an LLM request is abandoned.")
    rewrite: str = Field(
        "auto",
        description="Who rewrites a follow-up question for search with an LLM backend: 'model', 'rules' or "
        "'auto' (the model, except the bundled Gemma 3 270M, whose rewrites were usable for none of the "
        "16 follow-ups it was asked on the tune split of eval/followups.jsonl).",
    )


class Settings(BaseSettings):
    """Every setting of rag, with its default and what it does."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_nested_delimiter="__", extra="forbid"
    )

    paths: PathSettings = Field(default_factory=PathSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    guard_documents: bool = Field(
        True,
        description="Mask instruction-like sentences in documents before a model sees them and never "
        "quote them. Turn off only to measure what the guard prevents.",
    )
    show_progress: bool = Field(True, description="Show progress bars (RAG_SHOW_PROGRESS=0 turns them off).")
    max_upload_mb: float = Field(100.0, gt=0, le=100_000, description="Largest file accepted by an upload, in MB.")
