"""How often the bundled LLM's answer is kept, and how long it takes, on held-out questions.

    python benchmarks/llm_replacement.py LINES:MAX_TOKENS:REPEAT_PENALTY [N] [--split tune] [--sentences K]

For the first N (default 10) answerable questions of each corpus of the collection's test
split (or ``--split tune``), the llama-cpp backend answers with ``rag.generators.ANSWER_LINES``,
``settings.llm.max_tokens`` and ``rag.generators.REPEAT_PENALTY`` set as given (``1:160:1.0``
is the shipped setting, ``0:256:1.2`` the one before it).  An answer is *kept* when it is the
model's own after the citation check; *replaced* when verified quotes took its place; *fell
back* when the model gave nothing usable.  Questions declined before generation are counted
apart.  ``--sentences`` sets how many evidence sentences the prompt gives the model
(``rag.prompts.EVIDENCE_SENTENCES``, 5 shipped).  Writes
benchmarks/results/llm_replacement-LINES-MAX_TOKENS-PENALTY.json (with ``-SPLIT-sK`` appended when
either option is given).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import write  # noqa: E402

import rag.generators as generators  # noqa: E402
import rag.prompts as prompts  # noqa: E402
from rag.assistant import Assistant  # noqa: E402
from rag.collection import corpus_index, load_collection  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.embeddings import embedder_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("setting")
    parser.add_argument("per_corpus", nargs="?", type=int, default=10)
    parser.add_argument("--split", choices=("tune", "test"), default="test")
    parser.add_argument("--sentences", type=int, default=None)
    args = parser.parse_args()
    setting, per_corpus = args.setting, args.per_corpus
    if args.sentences is not None:
        prompts.EVIDENCE_SENTENCES = args.sentences
    lines, max_tokens, penalty = setting.split(":")
    generators.ANSWER_LINES, generators.REPEAT_PENALTY = int(lines), float(penalty)
    settings = Settings()
    settings.llm.max_tokens = int(max_tokens)
    embedder = embedder_for(settings.embedding)
    counts = {"kept": 0, "replaced": 0, "fell_back": 0, "declined_before_generation": 0}
    seconds: list[float] = []
    for corpus in load_collection():
        items = [i for i in corpus.items(args.split) if i.answerable][:per_corpus]
        if not items:
            continue
        assistant = Assistant(corpus_index(corpus, settings, embedder), "llama-cpp", embedder=embedder,
                              settings=settings)
        assistant.generator("llama-cpp")  # the model loads outside the timing
        for item in items:
            t0 = time.perf_counter()
            answer = assistant.ask(item.question)
            spent = time.perf_counter() - t0
            notice = answer.notice or ""
            if answer.abstained and "no sentence of the answer was supported" not in notice:
                counts["declined_before_generation"] += 1
                continue
            seconds.append(spent)
            key = "kept" if answer.backend == "llama-cpp" else "fell_back" if "failed" in notice else "replaced"
            counts[key] += 1
    generated = len(seconds)
    result = {"setting": {"answer_lines": int(lines), "max_tokens": int(max_tokens), "repeat_penalty": float(penalty)},
              "split": args.split, "evidence_sentences": prompts.EVIDENCE_SENTENCES, "per_corpus": per_corpus, "generated": generated, **counts,
              "kept_share": round(counts["kept"] / generated, 4) if generated else None,
              "p50_s": round(statistics.median(seconds), 3) if seconds else None}
    print(result)
    suffix = f"-{args.split}-s{prompts.EVIDENCE_SENTENCES}" if args.split != "test" or args.sentences else ""
    print(write(f"llm_replacement-{lines}-{max_tokens}-{penalty}{suffix}", result))


if __name__ == "__main__":
    main()
