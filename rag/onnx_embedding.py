"""The MiniLM embedder on ONNX Runtime: no torch and no sentence-transformers when serving.

The model's transformer is exported to ONNX once (:func:`export_onnx`, which is the
only code here that imports torch) into the cache folder, with a JSON sidecar that
records the file's SHA-256 and the weights it was exported from; a missing file, a
checksum that does not match, or other weights cause a new export.  Tokenisation is
the model's own ``tokenizer.json`` through ``tokenizers``; pooling is the mean over
the attention mask followed by L2 normalisation, as sentence-transformers does for
this model, so vectors match its own (cosine at least 0.999, checked by the tests)
and indexes built by either backend stay valid for the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.embeddings import resolve_model
from rag.errors import ConfigError

log = logging.getLogger(__name__)

#: ONNX opset of the export (supported by every onnxruntime release of the last years).
OPSET = 17
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Appended to the model id of an int8 embedder (indexes record the model id).
INT8_SUFFIX = "+int8"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_id(model_dir: Path) -> str:
    """A short id of the model's weights (size and hash of its first MiB), naming the export."""
    weights = next((model_dir / n for n in ("model.safetensors", "pytorch_model.bin") if (model_dir / n).is_file()),
                   None)
    if weights is None:
        raise ConfigError(f"no model.safetensors or pytorch_model.bin in {model_dir}")
    with weights.open("rb") as f:
        head = f.read(1 << 20)
    return hashlib.sha256(head + str(weights.stat().st_size).encode()).hexdigest()[:16]


def max_length(model_dir: Path) -> int:
    """The most word pieces the model reads (sentence-transformers' ``max_seq_length``)."""
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length", 512))
    return 512


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Export the transformer of the model in ``model_dir`` to ``target`` (atomically)."""
    import warnings

    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = tuple(torch.ones(2, 8, dtype=torch.long) if n != "token_type_ids" else
                   torch.zeros(2, 8, dtype=torch.long) for n in _INPUTS)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    axes = {n: {0: "batch", 1: "tokens"} for n in (*_INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes are not the user's concern
        torch.onnx.export(Hidden(model), sample, str(tmp), input_names=list(_INPUTS),
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    os.replace(tmp, target)
    return target


def onnx_model(model_dir: Path, cache_dir: Path) -> Path:
    """The checked ONNX export of the model in ``model_dir``, exported first when needed."""
    weights = _weights_id(model_dir)
    target = cache_dir / "onnx" / f"{model_dir.name}-{weights}.onnx"
    record = {"weights": weights, "opset": OPSET}
    if _checked(target, record):
        return target
    log.info("exporting %s to ONNX (once)", model_dir)
    export_onnx(model_dir, target)
    _seal(target, record)
    return target


def _checked(target: Path, record: dict[str, Any]) -> bool:
    """Whether ``target`` exists with a sidecar that records its SHA-256 and ``record``."""
    sidecar = target.with_suffix(".json")
    if not (target.is_file() and sidecar.is_file()):
        return False
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
    except ValueError:
        stored = {}
    if stored.get("sha256") == _sha256(target) and all(stored.get(k) == v for k, v in record.items()):
        return True
    log.warning("the ONNX file at %s does not match its checksum; making it again", target)
    return False


def _seal(target: Path, record: dict[str, Any]) -> None:
    """Write ``target``'s sidecar: its SHA-256 and ``record`` (atomically)."""
    sidecar = target.with_suffix(".json")
    tmp = sidecar.with_name(f".{sidecar.name}.tmp")
    tmp.write_text(json.dumps({"sha256": _sha256(target), **record}) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar)


def quantized_model(fp32: Path) -> Path:
    """The int8 dynamic quantisation of the export ``fp32`` (made once beside it, checked).

    Weights are quantised per output channel, activations per batch at run time
    (``onnxruntime.quantization.quantize_dynamic``); per-tensor weights lost too much
    (vectors at cosine 0.91-0.95 to fp32 on the seed chunks, against 0.99 per channel).
    """
    target = fp32.with_name(fp32.stem + ".int8.onnx")
    record = {"source_sha256": _sha256(fp32), "scheme": "dynamic-int8-per-channel"}
    if _checked(target, record):
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantising %s to int8 (once)", fp32)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the model is for convolutional networks
    try:
        quantize_dynamic(str(fp32), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, target)
    _seal(target, record)
    return target


@lru_cache(maxsize=4)
def _runtime(model_dir: str, cache_dir: str, threads: int,
             quantize: bool = False) -> tuple[Any, Any, threading.Lock, Path]:
    """(ONNX Runtime session, tokenizer, the tokenizer's lock, ONNX file) for a model, made once
    per process: every embedder of the same model shares them."""
    try:
        import onnxruntime as ort
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - both are dependencies of the package
        raise ConfigError("the onnx embedder needs onnxruntime and tokenizers; "
                          "pip install onnxruntime tokenizers") from exc
    path = Path(model_dir)
    if not (path / "tokenizer.json").is_file():
        raise ConfigError(f"{path} has no tokenizer.json; use RAG_EMBEDDING__BACKEND=sentence-transformers")
    onnx_path = onnx_model(path, Path(cache_dir))
    if quantize:
        onnx_path = quantized_model(onnx_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length(path))
    pad = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=pad if pad is not None else 0, pad_token="[PAD]")
    return session, tokenizer, threading.Lock(), onnx_path


class OnnxEmbedder:
    """A sentence-transformers model (mean pooling, normalised) run by ONNX Runtime."""

    def __init__(self, model: str, batch_size: int = 32, cache_dir: Path | None = None,
                 threads: int | None = None, quantize: bool = False) -> None:
        from rag.config import PathSettings

        self.model_id, self.path = resolve_model(model)
        if quantize:
            # Its vectors differ from fp32 ones (cosine about 0.99), so an index records which it has.
            self.model_id += INT8_SUFFIX
        self.batch_size = batch_size
        self._session, self._tokenizer, self._lock, self.onnx_path = _runtime(
            str(self.path), str(cache_dir or PathSettings().cache_dir), threads or os.cpu_count() or 1, quantize)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dim = int(self._session.get_outputs()[0].shape[-1])
        self.calls = 0  # texts embedded by embed_documents, for update accounting

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask,
                 "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
        hidden = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        self.calls += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Texts of similar length share a batch, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(order), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch")
        for start in starts:
            rows = order[start:start + self.batch_size]
            out[rows] = self._encode([texts[i] for i in rows])
        return np.ascontiguousarray(out)

    def embed_query(self, text: str) -> np.ndarray:
        return _cached_query(self, text)


@lru_cache(maxsize=4096)
def _cached_query(embedder: OnnxEmbedder, text: str) -> np.ndarray:
    vec = embedder._encode([text])[0]
    vec.setflags(write=False)
    return vec
