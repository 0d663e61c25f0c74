"""Run every speed benchmark, then print and save the targets they met or missed.

    python benchmarks/run_all.py            # full run (estimated ~20 min on 2 quiet cores;
                                            # 64 min measured at load average 7-12)
    python benchmarks/run_all.py --quick    # reduced sizes and repetitions (no 10k build, 20k not 100k)
    python benchmarks/run_all.py --only retrieval answers

Runs indexing, retrieval, answers, cold_start and speedups in that order, each in its
own process, sharing one temp cache (RAG_BENCH_CACHE) so the synthetic 1k/10k indexes
built and timed by indexing.py are reused by retrieval.py instead of embedded again.
Each script writes benchmarks/results/NAME.json (NAME-quick.json with --quick); this
one writes benchmarks/results/summary.json (summary-quick.json).  Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, table, write  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = ["indexing", "retrieval", "answers", "cold_start", "speedups"]


def describe(name: str, t: dict) -> str:
    keys = [k for k in t if k not in ("met", "target", "target_ms", "target_s", "target_mb", "note", "judged_on",
                                      "all_sizes", "cpu_time_ratios", "measured")]
    return ", ".join(f"{k}={t[k]}" for k in keys if not isinstance(t[k], (dict, list)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced sizes and repetitions")
    ap.add_argument("--only", nargs="+", choices=SCRIPTS, help="run only these benchmarks")
    ap.add_argument("--summary-only", action="store_true", help="run nothing: summarise the existing results")
    args = ap.parse_args()
    scripts = [] if args.summary_only else (args.only or SCRIPTS)
    suffix = "-quick" if args.quick else ""

    cache = Path(tempfile.mkdtemp(prefix="rag-bench-cache-"))
    env = {**os.environ, "RAG_BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "GRADIO_ANALYTICS_ENABLED": "False"}
    if args.quick:
        env["RAG_BENCH_QUICK"] = "1"
    python = sys.executable
    status = {}
    t_all = time.perf_counter()
    try:
        for name in scripts:
            print(f"\n=== {name} ===", flush=True)
            t0 = time.perf_counter()
            cmd = [python, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
            rc = subprocess.call(cmd, env=env, cwd=str(HERE.parent))
            status[name] = {"returncode": rc, "wall_s": round(time.perf_counter() - t0, 1)}
            print(f"=== {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} in {status[name]['wall_s']:.0f} s ===",
                  flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    targets, rows = {}, []
    for name in SCRIPTS:
        path = RESULTS / f"{name}{suffix}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        for key, t in data.get("targets", {}).items():
            targets[key] = {**t, "from": path.name, "created": data.get("created")}
            met = t.get("met")
            rows.append({"target": key, "met": "met" if met else ("n/a" if met is None else "MISSED"),
                         "measured": describe(key, t)[:110], "file": path.name})
    print("\n" + table(rows, ["target", "met", "measured", "file"]))
    out = write(f"summary{suffix}", {"quick": args.quick, "scripts": status, "targets": targets,
                                     "wall_s": round(time.perf_counter() - t_all, 1)})
    print(out)
    failed = [n for n, s in status.items() if s["returncode"] != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
