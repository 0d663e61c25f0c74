"""The ONNX Runtime embedder: the same vectors as sentence-transformers, no torch on the
serving path, and an export that is checked and redone when damaged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.embeddings import SentenceTransformerEmbedder, get_embedder
from rag.errors import ConfigError
from rag.onnx_embedding import OnnxEmbedder, _runtime

ROOT = Path(__file__).resolve().parent.parent


def _texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "seeds").glob("*.txt")):
        texts += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    texts += [json.loads(line)["question"] for line in (ROOT / "eval" / "dev.jsonl").open(encoding="utf-8")]
    return texts


def test_bundled_model_is_served_by_onnx_runtime(embedder) -> None:  # noqa: ANN001
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2" and embedder.dim == 384


def test_onnx_vectors_match_sentence_transformers(embedder) -> None:  # noqa: ANN001
    texts = _texts()
    assert len(texts) > 150
    reference = get_embedder(backend="sentence-transformers")
    assert isinstance(reference, SentenceTransformerEmbedder)
    a, b = embedder.embed_documents(texts), reference.embed_documents(texts)
    assert a.shape == b.shape == (len(texts), 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) >= 0.999
    q = texts[-1]
    assert float(embedder.embed_query(q) @ reference.embed_query(q)) >= 0.999
    # Batching and padding do not change a text's vector.
    assert float(embedder.embed_documents([texts[0]])[0] @ a[0]) >= 0.99999


def test_serving_path_imports_no_torch() -> None:
    code = ("import sys\nfrom rag.assistant import Assistant\n"
            "a = Assistant('index')\n"
            "answer = a.ask('Which rule did the report follow so that no comments are attributed to individuals?')\n"
            "assert answer.citations, answer\n"
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers', 'gradio', 'llama_cpp') "
            "if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_damaged_export_is_exported_again(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    first = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    path = first.onnx_path
    assert path.parent == tmp_path / "onnx" and path.with_suffix(".json").is_file()
    vector = first.embed_query("Chatham House rule")
    with path.open("ab") as f:
        f.write(b"damage")
    _runtime.cache_clear()
    second = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path)
    assert second.onnx_path == path
    assert not path.read_bytes().endswith(b"damage")
    assert float(second._encode(["Chatham House rule"])[0] @ vector) >= 0.99999
    _runtime.cache_clear()


def test_unknown_embedding_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown embedding backend"):
        get_embedder(backend="tensorflow")
