"""Index builds on Ray Data with 1 and 2 workers against the plain indexer, same corpus, same run.

    python benchmarks/ray_indexing.py [--quick]

A synthetic corpus of about 1,000 chunks (300 with --quick) is indexed into a fresh folder by
``rag.indexing.index_folder`` with the default embedder: in this process (plain), and with
:class:`rag.ray_indexing.RayWorkers` on a local Ray runtime of 1 and of 2 CPUs.  Each build
is repeated (plain, ray-1, ray-2 in rotating order) and medians are compared; the Ray
runtime's start-up is timed apart.  Needs the 'scale' extra.

Writes benchmarks/results/ray_indexing.json (ray_indexing-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write  # noqa: E402
from synth import is_quick, load_avg, median, result_name, write_corpus  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.parse_args()
    quick = is_quick()
    import ray

    from rag.embeddings import get_embedder
    from rag.indexing import index_folder
    from rag.ray_indexing import RayWorkers

    embedder = get_embedder()
    embedder.embed_documents(["warm-up"])
    rounds = 2 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-ray-"))
    try:
        corpus = write_corpus(tmp / "corpus", 300 if quick else 1000)
        times: dict[str, list[float]] = {"plain": [], "ray-1": [], "ray-2": []}
        startup: dict[str, list[float]] = {"ray-1": [], "ray-2": []}
        chunks = 0
        steps = list(times)
        for r in range(rounds):
            for step in steps[r % 3:] + steps[:r % 3]:
                workers = None
                if step != "plain":
                    t0 = time.perf_counter()
                    workers = RayWorkers("all-MiniLM-L6-v2", workers=int(step[-1]))
                    startup[step].append(time.perf_counter() - t0)
                out = tmp / f"index-{step}-{r}"
                t0 = time.perf_counter()
                report = index_folder(corpus, out, embedder, show_progress=False, workers=workers)
                times[step].append(time.perf_counter() - t0)
                chunks = report.chunks
                if workers is not None:
                    workers.close()
                    assert not ray.is_initialized()
                shutil.rmtree(out, ignore_errors=True)
                print(f"  round {r + 1} {step}: {times[step][-1]:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = median(times["plain"])
    rows = [{"build": k, "runs": len(v), "median_s": round(median(v), 2), "chunks_per_s": round(chunks / median(v), 1),
             "vs_plain": round(base / median(v), 3),
             "ray_startup_s": round(median(startup[k]), 2) if k in startup else None} for k, v in times.items()]
    print(table(rows, ["build", "runs", "median_s", "chunks_per_s", "vs_plain", "ray_startup_s"]))
    path = write(result_name("ray_indexing"), {
        "quick": quick, "chunks": chunks, "rounds": rounds, "builds": rows,
        "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "method": "index_folder of a synthetic corpus into a fresh folder (chunks and sentences embedded), in "
                  "this process and with RayWorkers on a local Ray runtime of 1 and 2 CPUs; rotating order; "
                  "medians; vs_plain = plain median / build median; the runtime's start-up is not in the build "
                  "time",
        "load_avg_end": load_avg(),
    })
    print(path)


if __name__ == "__main__":
    main()
