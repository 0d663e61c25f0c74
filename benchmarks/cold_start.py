"""Cold start: process start to UI serving, and process start to first answer.

    python benchmarks/cold_start.py [--quick]

* serving: ``python app.py`` with GRADIO_SERVER_PORT=<free port>, polled over HTTP
  until ``/`` answers 200; then two questions are answered through gradio_client and
  the app's peak RSS (VmHWM in /proc/<pid>/status) is read.  The app serves a temp copy
  of the prebuilt index/ (RAG_PATHS__INDEX_DIR) with RAG_PATHS__CORPUS_DIR=seeds, so
  its freshness check runs as for the default index but can never rewrite index/.
* first answer: ``python -c "from rag import Assistant; a = Assistant.from_settings();
  a.ask(...)"`` over the same index copy; the child stamps import / construct / ask.
* what the start-up is made of: ``python -c "import X"`` for torch,
  sentence_transformers, gradio, rag and rag.ui.

Several runs each (medians); the OS file cache is warm after the first.
Writes benchmarks/results/cold_start.json (cold_start-quick.json with --quick).
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
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, table, write  # noqa: E402
from synth import PREBUILT, SEEDS, free_port, is_quick, load_avg, median, python, result_name  # noqa: E402

SERVING_TARGET_S = 6.0
#: Start to serving, and start to a one-shot answer, as a share of ``import sentence_transformers``
#: measured in the same run (the "Fast start" target).
COLD_RATIO_TARGET = 0.3
RSS_TARGET_MB = 1.5 * 1024
QUESTIONS = ["Which rule did the report follow so that no comments are attributed to individuals?",
             "In what year was the Permanent Joint Board on Defense created?"]

FIRST_ANSWER = """
import json, time
t0 = time.time()
from rag import Assistant
t1 = time.time()
a = Assistant.from_settings()
t2 = time.time()
ans = a.ask(%r)
t3 = time.time()
import resource
print(json.dumps({"t_start": t0, "t_imported": t1, "t_constructed": t2, "t_answered": t3,
                  "abstained": ans.abstained, "backend": ans.backend,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def env_for(index_copy: Path, port: int | None = None) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "RAG_PATHS__INDEX_DIR": str(index_copy), "RAG_PATHS__CORPUS_DIR": str(SEEDS),
           "RAG_SHOW_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    if port:
        env.update(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    return env


def proc_status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS"):
            out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def ask_through_ui(url: str) -> dict:
    """Answer QUESTIONS through gradio_client; return per-question wall times and what was called."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    api = client.view_api(print_info=False, return_format="dict")
    names = list((api or {}).get("named_endpoints", {}))
    name = next((n for n in names if n.strip("/") == "respond"), None) or \
        next((n for n in names if "respond" in n), None)
    if name is None:
        raise RuntimeError(f"no 'respond' endpoint among {names}")
    params = api["named_endpoints"][name]["parameters"]
    times = []
    for q in QUESTIONS:
        args = []
        for p in params:
            label = (p.get("label") or p.get("parameter_name") or "").lower()
            if p.get("parameter_name") == "question" or "question" in label:
                args.append(q)
            elif p.get("parameter_name") == "backend" or "backend" in label:
                args.append("extractive")
            elif p.get("parameter_name") == "k" or "top-k" in label:
                args.append(5)
            else:
                args.append(p.get("parameter_default"))
        t0 = time.perf_counter()
        result = client.predict(*args, api_name=name)
        times.append(time.perf_counter() - t0)
        if not result:
            raise RuntimeError(f"empty result from {name}")
    client.close() if hasattr(client, "close") else None
    return {"endpoint": name, "answer_wall_s": [round(t, 3) for t in times]}


def serving_run(index_copy: Path, log: Path, answer: bool) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen([python(), "app.py"], cwd=str(ROOT), env=env_for(index_copy, port),
                                stdout=fh, stderr=subprocess.STDOUT)
        try:
            served = None
            while time.perf_counter() - t0 < 300:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}; log tail:\n{log.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as r:
                        if r.status == 200:
                            served = time.perf_counter() - t0
                            break
                except OSError:
                    pass
                time.sleep(0.05)
            if served is None:
                raise RuntimeError("app.py did not serve within 300 s")
            out = {"serving_s": round(served, 3), "rss_mb_at_serving": proc_status(proc.pid)}
            if answer:
                out.update(ask_through_ui(url))
                time.sleep(0.5)
                out["rss_mb_after_answers"] = proc_status(proc.pid)
            text = log.read_text()
            out["rebuilt_index"] = "rebuilding the index" in text
            return out
        finally:
            stop(proc)


def first_answer_run(index_copy: Path) -> dict:
    code = FIRST_ANSWER % QUESTIONS[0]
    t_spawn = time.time()
    t0 = time.perf_counter()
    r = subprocess.run([python(), "-c", code], cwd=str(ROOT), env=env_for(index_copy), capture_output=True,
                       text=True, timeout=600)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"first-answer child failed:\n{r.stderr[-2000:]}")
    d = json.loads([ln for ln in r.stdout.splitlines() if ln.strip()][-1])
    return {"process_exit_s": round(wall, 3), "to_first_answer_s": round(d["t_answered"] - t_spawn, 3),
            "interpreter_start_s": round(d["t_start"] - t_spawn, 3),
            "import_rag_s": round(d["t_imported"] - d["t_start"], 3),
            "construct_assistant_s": round(d["t_constructed"] - d["t_imported"], 3),
            "first_ask_s": round(d["t_answered"] - d["t_constructed"], 3),
            "abstained": d["abstained"], "peak_rss_mb": round(d["peak_rss_mb"], 1)}


def import_time(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    r = subprocess.run([python(), "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-1000:])
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.parse_args()
    quick = is_quick()
    runs = 1 if quick else 3
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-cold-"))
    try:
        index_copy = tmp / "index"
        shutil.copytree(PREBUILT, index_copy)
        result: dict = {"quick": quick, "runs": runs}

        print("imports ...", flush=True)
        imports = {}
        for module in ("torch", "sentence_transformers", "gradio", "rag", "rag.ui"):
            imports[module] = round(import_time(module), 3)
        result["import_s_median"] = imports

        print(f"first answer x{runs} ...", flush=True)
        fa = [first_answer_run(index_copy) for _ in range(runs)]
        result["first_answer"] = {"runs": fa, **{f"{k}_median": round(median([r[k] for r in fa]), 3) for k in
                                                  ("to_first_answer_s", "import_rag_s", "construct_assistant_s",
                                                   "first_ask_s", "interpreter_start_s")}}

        app = ROOT / "app.py"
        if not app.is_file():
            result["serving"] = {"error": "not available: app.py does not exist yet"}
        else:
            print(f"app.py to serving x{runs} ...", flush=True)
            sv = []
            for i in range(runs):
                sv.append(serving_run(index_copy, tmp / f"app-{i}.log", answer=(i == runs - 1)))
                print(f"  {sv[-1]['serving_s']:.2f} s", flush=True)
            last = sv[-1]
            result["serving"] = {"runs": sv, "serving_s_median": round(median([r["serving_s"] for r in sv]), 3),
                                 "peak_rss_mb_after_answers": last.get("rss_mb_after_answers", {}).get("VmHWM"),
                                 "endpoint": last.get("endpoint"), "answer_wall_s": last.get("answer_wall_s")}

        rows = [{"what": f"import {m}", "median s": v} for m, v in imports.items()]
        f = result["first_answer"]
        rows += [{"what": "start -> first answer", "median s": f["to_first_answer_s_median"]},
                 {"what": "  import rag", "median s": f["import_rag_s_median"]},
                 {"what": "  Assistant.from_settings()", "median s": f["construct_assistant_s_median"]},
                 {"what": "  first ask()", "median s": f["first_ask_s_median"]}]
        s = result["serving"]
        if "serving_s_median" in s:
            rows += [{"what": "start -> UI serving (200)", "median s": s["serving_s_median"]},
                     {"what": "serving peak RSS MB (VmHWM)", "median s": s["peak_rss_mb_after_answers"]}]
        print(table(rows, ["what", "median s"]))

        targets = {}
        if "serving_s_median" in s:
            targets["cold_start_to_serving"] = {"target_s": SERVING_TARGET_S, "value_s": s["serving_s_median"],
                                                "met": s["serving_s_median"] <= SERVING_TARGET_S}
            hwm = s["peak_rss_mb_after_answers"]
            targets["serving_rss"] = {"target_mb": RSS_TARGET_MB, "value_mb": hwm,
                                      "met": hwm is not None and hwm <= RSS_TARGET_MB,
                                      "measured": "VmHWM of the app process after answering 2 questions (extractive)"}
        else:
            targets["cold_start_to_serving"] = {"target_s": SERVING_TARGET_S, "met": None, "note": s.get("error")}
            targets["serving_rss"] = {"target_mb": RSS_TARGET_MB, "met": None, "note": s.get("error")}
        st = imports["sentence_transformers"]
        ratios = {"first_answer": round(f["to_first_answer_s_median"] / st, 3)}
        if "serving_s_median" in s:
            ratios["serving"] = round(s["serving_s_median"] / st, 3)
        for what, ratio in ratios.items():
            targets[f"cold_ratio_{what}"] = {"target": COLD_RATIO_TARGET, "value": ratio, "met": ratio <= COLD_RATIO_TARGET,
                                             "measured": f"start to {what.replace('_', ' ')} / import "
                                                         f"sentence_transformers ({st} s), same run"}
        print("ratios to import sentence_transformers:", ratios)
        result["targets"] = targets
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        result["load_avg_end"] = load_avg()
        print(write(result_name("cold_start"), result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
