"""Candidate speed-ups, each measured against the current path in the same run.

    python benchmarks/speedups.py [--quick]

1. ONNX / OpenVINO backends of sentence-transformers: used only if they work fully
   offline from the bundled model folder (no install, no export download); otherwise
   recorded as "not available: <reason>".
2. int8 dynamic quantisation of MiniLM's Linear layers (torch.ao, no new package) and
   bf16 autocast (the CPU may have AVX512-BF16): document-encode throughput (A/B
   alternating against fp32), single-query latency, and quality: cosine to the fp32
   vectors and dense recall@5 / MRR@10 on the answerable dev questions over the seeds.
3. Length-sorted batching: whether sentence-transformers already sorts by length (read
   from its encode source), and what the sort is worth: one encode call over shuffled
   mixed-length texts (sorted globally inside) vs the same texts encoded batch by batch.
4. Query-embedding cache: embed_query and hybrid Retriever.search, miss vs hit.
   Threads: single-query and batch encode with 1 torch thread vs 2; fresh processes
   with OMP_WAIT_POLICY=PASSIVE / OMP_NUM_THREADS=1; hybrid search over the largest
   cached index with OMP_WAIT_POLICY=PASSIVE set in-process before ``import rag``;
   llama.cpp n_threads=1 vs the default.
5. Lazy model loading: in a fresh process, import rag / load the model / construct the
   Assistant / first and second ask, to see what lazy loading could move.

Writes benchmarks/results/speedups.json (speedups-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, table, write  # noqa: E402
from synth import (  # noqa: E402
    PREBUILT, dev_questions, is_quick, load_avg, median, python, result_name, seed_sentences, summary_ms,
    synthetic_chunks,
)

import numpy as np  # noqa: E402

LAZY_CHILD = """
import json, time
t0 = time.perf_counter()
import rag, sys
t1 = time.perf_counter()
torch_after_import = "torch" in sys.modules
from rag.embeddings import get_embedder
e = get_embedder()
t2 = time.perf_counter()
from rag.assistant import Assistant
a = Assistant(%r, "extractive", embedder=e)
t3 = time.perf_counter()
a.ask(%r)
t4 = time.perf_counter()
a.ask(%r)
t5 = time.perf_counter()
print(json.dumps({"import_rag_s": t1 - t0, "torch_imported_by_import_rag": torch_after_import,
                  "load_model_s": t2 - t1, "construct_rest_s": t3 - t2, "first_ask_s": t4 - t3,
                  "second_ask_s": t5 - t4}))
"""


def backend_availability() -> dict:
    from sentence_transformers import SentenceTransformer
    import sentence_transformers

    from rag.embeddings import bundled_model_path

    folder = bundled_model_path()
    has_backend_arg = "backend" in inspect.signature(SentenceTransformer.__init__).parameters
    onnx_files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.onnx"))
    ov_files = sorted(str(p.relative_to(folder)) for p in folder.rglob("openvino*.xml"))
    out = {"sentence_transformers": sentence_transformers.__version__, "backend_argument": has_backend_arg,
           "bundled_model_folder": str(folder), "onnx_files_in_folder": onnx_files,
           "openvino_files_in_folder": ov_files}
    for name, mods, files in (("onnx", ("onnxruntime", "optimum"), onnx_files),
                              ("openvino", ("openvino", "optimum"), ov_files)):
        missing = [m for m in mods if importlib.util.find_spec(m) is None]
        reasons = []
        if not has_backend_arg:
            reasons.append(f"sentence-transformers {sentence_transformers.__version__} has no backend= argument")
        if missing:
            reasons.append(f"{', '.join(missing)} not installed (pip install sentence-transformers[{name}])")
        if not files:
            reasons.append(f"the bundled model folder has no {name} export, so it would have to be exported "
                           "with optimum first")
        out[name] = "available" if not reasons else "not available: " + "; ".join(reasons)
    return out


def encode_s(model, texts: list[str], ctx=None) -> tuple[float, np.ndarray]:  # noqa: ANN001
    import contextlib

    with (ctx() if ctx else contextlib.nullcontext()):
        t0 = time.perf_counter()
        v = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
        return time.perf_counter() - t0, np.asarray(v, dtype=np.float32)


def dense_quality(encode) -> dict:  # noqa: ANN001
    """Dense recall@5 / MRR@10 over the prebuilt seeds chunks with ``encode(texts) -> vectors``."""
    from rag.metrics import recall_at, reciprocal_rank

    chunks = [json.loads(line)["text"] for line in (PREBUILT / "chunks.jsonl").read_text().splitlines() if line]
    items = [q for q in dev_questions() if q["answerable"]]
    cv = encode(chunks)
    qv = encode([q["question"] for q in items])
    r5 = mrr = 0.0
    for item, q in zip(items, qv):
        order = np.argsort(-(cv @ q))[:10]
        texts = [chunks[i] for i in order]
        quotes = [e["quote"] for e in item["evidence"]]
        r5 += recall_at(texts, quotes, 5)
        mrr += reciprocal_rank(texts, quotes, 10)
    return {"recall@5": round(r5 / len(items), 4), "mrr@10": round(mrr / len(items), 4)}


def variants_vs_fp32(model, texts: list[str], pairs: int, questions: list[str]) -> dict:  # noqa: ANN001
    import torch
    from torch.ao.quantization import quantize_dynamic

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)

    def bf16():  # noqa: ANN202
        return torch.autocast("cpu", dtype=torch.bfloat16)

    variants = {"int8_dynamic": (int8, None), "bf16_autocast": (model, bf16)}
    out = {}
    for name, (m, ctx) in variants.items():
        encode_s(m, texts[:8], ctx)  # warm-up
        base_t, var_t = [], []
        base_v = var_v = None
        for p in range(pairs):
            order = ("base", "var") if p % 2 == 0 else ("var", "base")
            for which in order:
                if which == "base":
                    t, base_v = encode_s(model, texts)
                    base_t.append(t)
                else:
                    t, var_v = encode_s(m, texts, ctx)
                    var_t.append(t)
        cos = np.sum(base_v * var_v, axis=1)
        q_base, q_var = [], []
        for q in questions:
            t0 = time.perf_counter()
            encode_s(model, [q])
            q_base.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            encode_s(m, [q], ctx)
            q_var.append(time.perf_counter() - t0)

        def enc(ts, mm=m, cc=ctx):  # noqa: ANN001, ANN202
            return encode_s(mm, ts, cc)[1]

        out[name] = {
            "fp32_chunks_per_s": round(len(texts) / median(base_t), 2),
            "variant_chunks_per_s": round(len(texts) / median(var_t), 2),
            "speedup_encode": round(median(base_t) / median(var_t), 3),
            "query_p50_ms_fp32": summary_ms(q_base)["p50_ms"], "query_p50_ms_variant": summary_ms(q_var)["p50_ms"],
            "speedup_query": round(median(q_base) / median(q_var), 3),
            "cosine_to_fp32": {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)},
            "dense_quality_fp32": dense_quality(lambda ts: encode_s(model, ts)[1]),
            "dense_quality_variant": dense_quality(enc),
            "pairs": pairs, "texts": len(texts),
        }
    return out


def length_sorting(model, texts: list[str], pairs: int) -> dict:  # noqa: ANN001
    import sentence_transformers.sentence_transformer.model as stm

    src = inspect.getsource(stm.SentenceTransformer._inference) if hasattr(stm.SentenceTransformer, "_inference") \
        else inspect.getsource(stm.SentenceTransformer.encode)
    sorts = "length_sorted_idx = np.argsort([-self._input_length(sen)" in src
    shuffled = texts[:]
    random.Random(1).shuffle(shuffled)
    sorted_t, unsorted_t = [], []
    for p in range(pairs):
        for which in (("sorted", "unsorted") if p % 2 == 0 else ("unsorted", "sorted")):
            if which == "sorted":
                sorted_t.append(encode_s(model, shuffled)[0])
            else:
                t0 = time.perf_counter()
                for i in range(0, len(shuffled), 32):  # each call sorts only its own 32 texts
                    encode_s(model, shuffled[i:i + 32])
                unsorted_t.append(time.perf_counter() - t0)
    lengths = [len(t) for t in texts]
    return {
        "sentence_transformers_sorts_by_length": sorts,
        "where": "sentence_transformers/sentence_transformer/model.py, SentenceTransformer._inference: "
                 "length_sorted_idx = np.argsort([-self._input_length(sen) for sen in inputs]) (character "
                 "length, longest first; interleaved long/short only when _can_flatten_inputs(), i.e. "
                 f"flash-attention flattening: {model._can_flatten_inputs()} here), results put back in "
                 "input order",
        "rag_gets_it": "yes: SentenceTransformerEmbedder.embed_documents passes the whole list in one encode call",
        "texts": len(texts), "chars_min_median_max": [min(lengths), int(np.median(lengths)), max(lengths)],
        "one_call_sorted_s": round(median(sorted_t), 3), "batch_by_batch_unsorted_s": round(median(unsorted_t), 3),
        "sorting_speedup": round(median(unsorted_t) / median(sorted_t), 3), "pairs": pairs,
    }


def torch_threads(model, questions: list[str], texts: list[str], pairs: int) -> dict:  # noqa: ANN001
    """Single-query latency and batch throughput with 1 torch thread vs the default (one per core)."""
    import torch

    default = torch.get_num_threads()
    q = {default: [], 1: []}
    b = {default: [], 1: []}
    try:
        for p in range(pairs):
            for n in ((default, 1) if p % 2 == 0 else (1, default)):
                torch.set_num_threads(n)
                for text in questions:
                    t0 = time.perf_counter()
                    encode_s(model, [text])
                    q[n].append(time.perf_counter() - t0)
                b[n].append(encode_s(model, texts)[0])
    finally:
        torch.set_num_threads(default)
    return {"default_threads": default,
            "query_p50_ms": {str(default): summary_ms(q[default])["p50_ms"], "1": summary_ms(q[1])["p50_ms"]},
            "query_p95_ms": {str(default): summary_ms(q[default])["p95_ms"], "1": summary_ms(q[1])["p95_ms"]},
            "query_speedup_1_thread": round(median(q[default]) / median(q[1]), 3),
            "batch_chunks_per_s": {str(default): round(len(texts) / median(b[default]), 2),
                                   "1": round(len(texts) / median(b[1]), 2)},
            "batch_speedup_1_thread": round(median(b[default]) / median(b[1]), 3),
            "pairs": pairs, "queries": len(questions), "batch_texts": len(texts),
            "note": "torch's OpenMP pool spins at barriers; when the machine is oversubscribed (see load_avg) a "
                    "descheduled partner thread stalls every op, which hurts tiny single-query calls most"}


def llama_threads(questions: list[str], pairs: int) -> dict:
    """Bundled Gemma: time to first token and decode rate with n_threads=1 vs the default (os.cpu_count())."""
    from rag.assistant import Assistant
    from rag.generators import GenerationRequest, LlamaCppGenerator

    assistant = Assistant(PREBUILT, "extractive")
    requests = []
    for q in questions:
        hits = assistant.retriever.search(q, 5, "hybrid")
        requests.append(GenerationRequest(q, hits, assistant.ranker.rank(q, hits)))
    gens = {"default": LlamaCppGenerator(max_tokens=32), "1": LlamaCppGenerator(max_tokens=32, n_threads=1)}
    res: dict = {k: {"ttft": [], "decode": []} for k in gens}
    for p in range(pairs):
        for name in (("default", "1") if p % 2 == 0 else ("1", "default")):
            gen = gens[name]
            for req in requests:
                gen.llm.reset()  # no KV prefix reuse between the two models' turns
                t0 = time.perf_counter()
                first = None
                text = ""
                for delta in gen.stream(req):
                    if delta and first is None:
                        first = time.perf_counter()
                    text += delta
                end = time.perf_counter()
                n = len(gen.llm.tokenize(text.encode(), add_bos=False)) if text else 0
                res[name]["ttft"].append((first or end) - t0)
                if first and n > 1 and end > first:
                    res[name]["decode"].append((n - 1) / (end - first))
    out = {"default_n_threads": gens["default"].llm.n_threads if hasattr(gens["default"].llm, "n_threads") else None,
           "max_tokens": 32, "questions": len(questions), "pairs": pairs, "kv_cache_reset_each_request": True}
    for name, r in res.items():
        out[f"n_threads={name}"] = {"ttft_p50_ms": summary_ms(r["ttft"])["p50_ms"],
                                    "decode_tok_s_median": round(median(r["decode"]), 2) if r["decode"] else None}
    d, o = out["n_threads=default"], out["n_threads=1"]
    out["ttft_speedup_1_thread"] = round(d["ttft_p50_ms"] / o["ttft_p50_ms"], 3)
    if d["decode_tok_s_median"] and o["decode_tok_s_median"]:
        out["decode_speedup_1_thread"] = round(o["decode_tok_s_median"] / d["decode_tok_s_median"], 3)
    return out


THREAD_CHILD = """
import json, statistics, sys, time
sys.path.insert(0, %r)
from synth import dev_questions, synthetic_chunks
from rag.embeddings import get_embedder
import torch
m = get_embedder(backend="sentence-transformers")._model
qs = [q["question"] for q in dev_questions()][:36]
texts = [c.text for c in synthetic_chunks(64, seed=7)]
m.encode(qs[:2], normalize_embeddings=True)
q = []
for text in qs:
    t0 = time.perf_counter(); m.encode([text], normalize_embeddings=True); q.append(time.perf_counter() - t0)
t0 = time.perf_counter(); m.encode(texts, batch_size=32, normalize_embeddings=True); b = time.perf_counter() - t0
print(json.dumps({"threads": torch.get_num_threads(), "query_p50_ms": statistics.median(q) * 1000,
                  "batch_chunks_per_s": len(texts) / b}))
"""


def thread_env(rounds: int) -> dict:
    """Fresh processes with OMP_WAIT_POLICY=PASSIVE or OMP_NUM_THREADS=1 against the default environment."""
    import os

    variants = {"default": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
                "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"}}
    res: dict = {k: [] for k in variants}
    names = list(variants)
    code = THREAD_CHILD % str(Path(__file__).resolve().parent)
    for r in range(rounds):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            env.update(HF_HUB_OFFLINE="1", **variants[name])
            p = subprocess.run([python(), "-c", code], cwd=str(ROOT), env=env, capture_output=True, text=True,
                               timeout=600)
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-1500:])
            res[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
    out = {"rounds": rounds, "load_avg": load_avg()}
    for name, runs in res.items():
        out[name] = {"torch_threads": runs[0]["threads"],
                     "query_p50_ms": round(median([x["query_p50_ms"] for x in runs]), 2),
                     "batch_chunks_per_s": round(median([x["batch_chunks_per_s"] for x in runs]), 2)}
    return out


PASSIVE_CHILD = """
import os, sys, json, time, statistics
if sys.argv[1] == "passive":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # in-process, before rag imports faiss and torch
import rag
from rag.embeddings import _cached_query, get_embedder
from rag.retrieval import Retriever
from rag.store import IndexStore
e = get_embedder(backend="sentence-transformers")
r = Retriever(IndexStore.load(sys.argv[2]), e)
qs = [json.loads(l)["question"] for l in open(sys.argv[3])][:36]
r.search("warm up", 5)
cold, warm = [], []
for q in qs:
    _cached_query.cache_clear()
    t = time.perf_counter(); r.search(q, 5, "hybrid"); cold.append(time.perf_counter() - t)
    t = time.perf_counter(); r.search(q, 5, "hybrid"); warm.append(time.perf_counter() - t)
print(json.dumps({"cold_p50_ms": statistics.median(cold) * 1000, "warm_p50_ms": statistics.median(warm) * 1000}))
"""


def passive_retrieval(rounds: int) -> dict:
    """Hybrid search, default vs ``os.environ["OMP_WAIT_POLICY"] = "PASSIVE"`` set before ``import rag``."""
    import os

    from synth import DEV, cache_dir

    index = next((cache_dir() / n for n in ("index-10000", "index-1000") if (cache_dir() / n / "manifest.json").is_file()),
                 PREBUILT)
    res: dict = {"default": [], "passive": []}
    for r in range(rounds):
        for name in (("default", "passive") if r % 2 == 0 else ("passive", "default")):
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
            env["HF_HUB_OFFLINE"] = "1"
            p = subprocess.run([python(), "-c", PASSIVE_CHILD, name, str(index), str(DEV)], cwd=str(ROOT), env=env,
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-1500:])
            res[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
    out = {"index": index.name, "rounds": rounds, "load_avg": load_avg()}
    for name, runs in res.items():
        out[name] = {k: round(median([x[k] for x in runs]), 3) for k in ("cold_p50_ms", "warm_p50_ms")}
    out["cold_speedup"] = round(out["default"]["cold_p50_ms"] / out["passive"]["cold_p50_ms"], 2)
    out["warm_speedup"] = round(out["default"]["warm_p50_ms"] / out["passive"]["warm_p50_ms"], 2)
    return out


def query_cache(embedder, questions: list[str]) -> dict:  # noqa: ANN001
    from rag.embeddings import _cached_query
    from rag.retrieval import Retriever
    from rag.store import IndexStore

    miss, hit = [], []
    for q in questions:
        _cached_query.cache_clear()
        t0 = time.perf_counter()
        embedder.embed_query(q)
        miss.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        embedder.embed_query(q)
        hit.append(time.perf_counter() - t0)
    retriever = Retriever(IndexStore.load(PREBUILT), embedder)
    s_miss, s_hit = [], []
    for q in questions:
        _cached_query.cache_clear()
        t0 = time.perf_counter()
        retriever.search(q, 5, "hybrid")
        s_miss.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        retriever.search(q, 5, "hybrid")
        s_hit.append(time.perf_counter() - t0)
    return {"embed_query_miss": summary_ms(miss), "embed_query_hit": summary_ms(hit),
            "hybrid_search_seeds_miss": summary_ms(s_miss), "hybrid_search_seeds_hit": summary_ms(s_hit),
            "hybrid_speedup_on_hit": round(median(s_miss) / median(s_hit), 2),
            "note": "a hit needs the exact same question text (after check_question's whitespace folding); the UI's "
                    "example questions and repeated questions hit, new questions miss"}


def lazy_loading(runs: int) -> dict:
    qs = [q["question"] for q in dev_questions()]
    code = LAZY_CHILD % (str(PREBUILT), qs[0], qs[2])
    out = []
    for _ in range(runs):
        r = subprocess.run([python(), "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=600,
                           env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {k: round(median([o[k] for o in out]), 3) for k in out[0] if k.endswith("_s")}
    return {"runs": out, "median": med, "torch_imported_by_import_rag": out[0]["torch_imported_by_import_rag"],
            "eager_today": "SentenceTransformerEmbedder.__init__ loads the model, so Assistant construction pays "
                           "load_model_s; lazy loading would move it to the first query, unless it is started in a "
                           "background thread at start-up (then the UI can serve load_model_s earlier and the first "
                           "answer is not delayed if the user takes that long to type)"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.parse_args()
    quick = is_quick()
    t_start = time.perf_counter()
    from rag.embeddings import get_embedder

    embedder = get_embedder(backend="sentence-transformers")  # the PyTorch model this study varies
    model = embedder._model
    questions = [q["question"] for q in dev_questions()]
    pairs = 1 if quick else 2
    n = 64 if quick else 128
    chunk_texts = [c.text for c in synthetic_chunks(n, seed=7)]

    result: dict = {"quick": quick}
    print("backends ...", flush=True)
    result["backends"] = backend_availability()
    print("int8 / bf16 vs fp32 ...", flush=True)
    result["precision"] = variants_vs_fp32(model, chunk_texts, pairs, questions[: (12 if quick else 36)])
    print("length sorting ...", flush=True)
    sentences = seed_sentences()
    mixed = chunk_texts[: n // 2] + sentences[: n // 2]
    result["length_sorting"] = length_sorting(model, mixed, pairs)
    print("torch threads ...", flush=True)
    result["torch_threads"] = torch_threads(model, questions[: (12 if quick else 36)], chunk_texts[:64], 2)
    print("OpenMP environment ...", flush=True)
    try:
        result["thread_env"] = thread_env(1 if quick else 2)
    except Exception as exc:  # noqa: BLE001
        result["thread_env"] = {"error": f"{exc.__class__.__name__}: {exc}"}
    print("OMP_WAIT_POLICY=PASSIVE on hybrid search ...", flush=True)
    try:
        result["passive_retrieval"] = passive_retrieval(2)
    except Exception as exc:  # noqa: BLE001
        result["passive_retrieval"] = {"error": f"{exc.__class__.__name__}: {exc}"}
    print("llama.cpp threads ...", flush=True)
    try:
        result["llama_threads"] = llama_threads(questions[:2 if quick else 4], 1 if quick else 2)
    except Exception as exc:  # noqa: BLE001
        result["llama_threads"] = {"error": f"{exc.__class__.__name__}: {exc}"}
    print("query cache ...", flush=True)
    result["query_cache"] = query_cache(embedder, questions)
    print("lazy loading ...", flush=True)
    result["lazy_loading"] = lazy_loading(1 if quick else 2)

    rows = []
    for name, v in result["precision"].items():
        rows.append({"candidate": name, "current": f"{v['fp32_chunks_per_s']} chunks/s",
                     "candidate value": f"{v['variant_chunks_per_s']} chunks/s", "gain": f"x{v['speedup_encode']}",
                     "quality": f"MRR {v['dense_quality_fp32']['mrr@10']}->{v['dense_quality_variant']['mrr@10']}, "
                                f"cos min {v['cosine_to_fp32']['min']}"})
    ls = result["length_sorting"]
    rows.append({"candidate": "length-sorted batching", "current": f"{ls['one_call_sorted_s']} s (sorted, in ST)",
                 "candidate value": f"{ls['batch_by_batch_unsorted_s']} s unsorted",
                 "gain": f"x{ls['sorting_speedup']} (already had)", "quality": "identical"})
    qc = result["query_cache"]
    rows.append({"candidate": "query cache hit", "current": f"{qc['hybrid_search_seeds_miss']['p50_ms']} ms miss",
                 "candidate value": f"{qc['hybrid_search_seeds_hit']['p50_ms']} ms hit",
                 "gain": f"x{qc['hybrid_speedup_on_hit']}", "quality": "identical"})
    lz = result["lazy_loading"]["median"]
    rows.append({"candidate": "lazy model load", "current": f"construct {lz['load_model_s'] + lz['construct_rest_s']:.2f} s",
                 "candidate value": f"model load {lz['load_model_s']:.2f} s movable",
                 "gain": f"first ask {lz['first_ask_s']:.2f} s, 2nd {lz['second_ask_s']:.2f} s", "quality": "-"})
    tt = result["torch_threads"]
    rows.append({"candidate": "torch 1 thread (query)", "current": f"{tt['query_p50_ms'][str(tt['default_threads'])]} ms",
                 "candidate value": f"{tt['query_p50_ms']['1']} ms", "gain": f"x{tt['query_speedup_1_thread']}",
                 "quality": f"batch x{tt['batch_speedup_1_thread']}"})
    te = result["thread_env"]
    if "error" not in te:
        for name in ("OMP_WAIT_POLICY=PASSIVE", "OMP_NUM_THREADS=1"):
            rows.append({"candidate": name, "current": f"{te['default']['query_p50_ms']} ms query",
                         "candidate value": f"{te[name]['query_p50_ms']} ms query",
                         "gain": f"x{round(te['default']['query_p50_ms'] / te[name]['query_p50_ms'], 2)} query",
                         "quality": f"batch {te['default']['batch_chunks_per_s']}->{te[name]['batch_chunks_per_s']}/s"})
    pr = result["passive_retrieval"]
    if "error" not in pr:
        rows.append({"candidate": f"PASSIVE before import rag ({pr['index']})",
                     "current": f"hybrid cold {pr['default']['cold_p50_ms']} ms",
                     "candidate value": f"{pr['passive']['cold_p50_ms']} ms", "gain": f"x{pr['cold_speedup']} cold",
                     "quality": f"warm x{pr['warm_speedup']}"})
    lt = result["llama_threads"]
    if "error" not in lt:
        rows.append({"candidate": "llama n_threads=1", "current": f"TTFT {lt['n_threads=default']['ttft_p50_ms']} ms",
                     "candidate value": f"TTFT {lt['n_threads=1']['ttft_p50_ms']} ms",
                     "gain": f"x{lt['ttft_speedup_1_thread']} TTFT, x{lt.get('decode_speedup_1_thread')} decode",
                     "quality": "same greedy output expected"})
    for b in ("onnx", "openvino"):
        rows.append({"candidate": b, "current": "-", "candidate value": result["backends"][b][:60], "gain": "-",
                     "quality": "-"})
    print(table(rows, ["candidate", "current", "candidate value", "gain", "quality"]))
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["load_avg_end"] = load_avg()
    result["note"] = ("every comparison alternates the current path and the candidate in this process, so both see "
                      "the same machine load; the gains hold for that load (load_avg_end), not for a quiet machine")
    print(write(result_name("speedups"), result))


if __name__ == "__main__":
    main()
