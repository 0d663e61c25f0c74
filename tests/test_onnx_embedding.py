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


def test_int8_embedder_is_close_to_fp32_and_names_itself(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    import shutil

    (tmp_path / "onnx").mkdir()
    for src in (embedder.onnx_path, embedder.onnx_path.with_suffix(".json")):  # the fp32 export, not redone
        shutil.copy(src, tmp_path / "onnx" / src.name)
    int8 = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path, quantize=True)
    assert int8.onnx_path.name.endswith(".int8.onnx") and int8.onnx_path.with_suffix(".json").is_file()
    assert int8.onnx_path.stat().st_size < embedder.onnx_path.stat().st_size / 2
    assert int8.model_id == embedder.model_id + "+int8"
    texts = _texts()
    a, b = embedder.embed_documents(texts), int8.embed_documents(texts)
    cos = (a * b).sum(axis=1)
    # Close (per-channel weights; 0.9888 the least on the seed chunks when this was written), not equal.
    assert float(cos.min()) >= 0.97 and float(cos.max()) < 0.99999
    # Damaged, it is quantised again.
    with int8.onnx_path.open("ab") as f:
        f.write(b"damage")
    _runtime.cache_clear()
    again = OnnxEmbedder("all-MiniLM-L6-v2", cache_dir=tmp_path, quantize=True)
    assert not again.onnx_path.read_bytes().endswith(b"damage")
    # (Activations are quantised per batch, so a text's int8 vector depends a little on its batch:
    # compare like with like.)
    assert float(again._encode([texts[0]])[0] @ int8._encode([texts[0]])[0]) >= 0.99999
    _runtime.cache_clear()


def test_an_index_of_one_precision_is_refused_by_the_other(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    from rag.errors import IndexMismatchError
    from rag.indexing import index_folder
    from rag.store import IndexStore

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("The Chatham House rule applied to every session of the workshop.\n",
                                   encoding="utf-8")
    index_folder(docs, tmp_path / "index", embedder, show_progress=False)
    int8 = get_embedder(backend="onnx-int8")
    with pytest.raises(IndexMismatchError, match=r"\+int8"):
        IndexStore.load(tmp_path / "index", model_id=int8.model_id, dim=int8.dim)
