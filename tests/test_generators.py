"""The generators: extractive, llama-cpp on the bundled Gemma 3 270M, and openai against a real
llama.cpp server, a closed port and a server that never answers."""

from __future__ import annotations

pytest_plugins = ["tests.llm_fixtures"]

import pytest

pytest.register_assert_rewrite("tests.llm_fixtures")

import re
import time
from pathlib import Path

from rag.citations import SUPPORT_THRESHOLD
from rag.config import LLMSettings, PathSettings
from rag.errors import ConfigError, UnknownBackendError
from rag.generators import (
    REGISTRY,
    ExtractiveGenerator,
    GenerationRequest,
    OpenAIGenerator,
    get_generator,
)
from rag.prompts import MARKER, NO_ANSWER, SYSTEM, cut_scaffolding, first_lines
from rag.types import Answer
from tests.llm_fixtures import collect, openai_settings

Q = "What does interchangeability require?"
F35_Q = "How many F-35 jets has Canada ordered?"
INTERCHANGE = (
    "Interchangeability requires a joint effort by government and industry to expand and streamline "
    "capabilities across the alliance through interchangeable parts and shared systems."
)


@pytest.fixture()
def no_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAG_LLM__OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAG_LLM__OPENAI_BASE_URL", raising=False)


def request_for(assistant, question: str = Q) -> GenerationRequest:  # noqa: ANN001
    hits = assistant.retrieve(question)
    return GenerationRequest(question, hits, assistant.ranker.rank(question, hits))


def assert_cited_answer(answer: Answer) -> None:
    """Not abstained, every marker cited, every citation supported and quoted from its passage."""
    assert not answer.abstained, answer
    assert answer.text != NO_ANSWER and answer.citations
    markers = [int(n) for g in MARKER.findall(answer.text) for n in g.split(",")]
    assert set(markers) == {c.marker for c in answer.citations}
    chunks = {h.chunk.id: h.chunk for h in answer.passages}
    for c in answer.citations:
        assert c.support >= SUPPORT_THRESHOLD, c
        assert c.chunk_id in chunks
        chunk = chunks[c.chunk_id]
        assert c.quote and c.quote in chunk.text
        assert chunk.text[c.char_start - chunk.char_start:c.char_end - chunk.char_start] == c.quote


# -- registry and extractive -----------------------------------------------------------------------

def test_registry_and_unknown_backend() -> None:
    assert {"extractive", "llama-cpp", "openai"} <= set(REGISTRY)
    assert isinstance(get_generator("extractive"), ExtractiveGenerator)
    with pytest.raises(UnknownBackendError) as err:
        get_generator("gpt-17")
    assert "gpt-17" in str(err.value) and "extractive" in str(err.value) and "openai" in str(err.value)


def test_extractive_streams_cited_evidence_sentences(make_assistant) -> None:  # noqa: ANN001
    req = request_for(make_assistant())
    deltas = list(ExtractiveGenerator().stream(req))
    assert deltas and all(isinstance(d, str) for d in deltas)
    text = "".join(deltas)
    assert text.startswith(INTERCHANGE + " [")
    for sentence, n in re.findall(r"(.+?) \[(\d+)\](?: |$)", text):
        assert sentence.strip() in req.hits[int(n) - 1].chunk.text
    assert list(ExtractiveGenerator().stream(GenerationRequest(Q, [], []))) == []


# -- openai: configuration and failing servers (fast, no model) -----------------------------------------

def test_openai_without_key_or_base_url_raises_config_error(no_openai_key) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as err:
        get_generator("openai", LLMSettings(backend="openai"), PathSettings())
    assert "OPENAI_API_KEY" in str(err.value)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIGenerator("gpt-4o-mini")


def test_openai_with_base_url_needs_no_key(no_openai_key, closed_port_url: str) -> None:  # noqa: ANN001
    gen = get_generator("openai", LLMSettings(openai_base_url=closed_port_url, openai_model="gemma"))
    assert isinstance(gen, OpenAIGenerator) and gen.name == "openai"


def test_openai_bad_prompt_style_raises(no_openai_key, closed_port_url: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="prompt style"):
        OpenAIGenerator("gemma", base_url=closed_port_url, prompt_style="chatty")


def test_assistant_without_openai_key_falls_back_with_notice(make_assistant, no_openai_key) -> None:  # noqa: ANN001
    answer = make_assistant("openai").ask(Q)
    assert answer.backend == "extractive" and not answer.abstained
    assert "openai" in answer.notice and "OPENAI_API_KEY" in answer.notice
    assert_cited_answer(answer)


def test_server_down_falls_back_to_extractive(make_assistant, closed_port_url: str) -> None:  # noqa: ANN001
    settings = openai_settings(closed_port_url, timeout_s=10)
    t0 = time.monotonic()
    deltas, answer = collect(make_assistant("openai", settings=settings).stream(Q))
    elapsed = time.monotonic() - t0
    assert elapsed < 10
    assert answer.backend == "extractive"
    assert answer.notice.startswith("The openai backend failed") and "extractive" in answer.notice
    assert INTERCHANGE in answer.text
    assert_cited_answer(answer)


def test_hanging_server_falls_back_within_the_timeout(make_assistant, hanging_server: str) -> None:  # noqa: ANN001
    settings = openai_settings(hanging_server, timeout_s=2)
    assistant = make_assistant("openai", settings=settings)
    assistant.ask(Q, backend="extractive")  # warm the sentence cache: time only the model call
    assert isinstance(assistant.generator("openai"), OpenAIGenerator)  # ... not the langchain import
    t0 = time.monotonic()
    answer = assistant.ask(Q)
    elapsed = time.monotonic() - t0
    assert answer.backend == "extractive" and "openai backend failed" in answer.notice
    assert 1.5 <= answer.timings["generate_s"] < 5, answer.timings
    assert elapsed < 8, elapsed
    assert_cited_answer(answer)


def test_openai_generator_raises_generation_error_on_hang(hanging_server: str, make_assistant) -> None:  # noqa: ANN001
    from rag.errors import GenerationError

    gen = OpenAIGenerator("gemma", base_url=hanging_server, timeout_s=1, prompt_style="evidence")
    t0 = time.monotonic()
    with pytest.raises(GenerationError, match="timed out"):  # the total deadline, whatever the socket does
        list(gen.stream(request_for(make_assistant())))
    assert time.monotonic() - t0 < 4


# -- llama-cpp on the bundled Gemma 3 270M -------------------------------------------------------------

@pytest.mark.slow
def test_llama_cpp_answers_with_supported_citations(make_assistant, llama_generator) -> None:  # noqa: ANN001
    deltas, answer = collect(make_assistant(llama_generator).stream(Q))
    assert llama_generator.gemma and llama_generator.evidence  # the bundled model, small-model prompt
    said = "".join(deltas)
    assert said.strip()  # text streamed from the model
    # Gemma 3 270M often paraphrases facts it was not given; the check then replaces its answer
    # with verified quotes, and says so.  Either way the answer holds only checked citations.
    if answer.backend != "llama-cpp":
        assert answer.backend == "extractive" and "could not be verified" in answer.notice, (answer.notice, said)
    else:
        assert answer.notice == ""
    assert_cited_answer(answer)


@pytest.mark.slow
def test_llama_cpp_respects_max_tokens(make_assistant, gguf_path: Path, llama_generator) -> None:  # noqa: ANN001
    from rag.generators import LlamaCppGenerator

    question = ("Describe in detail, at length, everything the report says about interchangeability, "
                "supply chains and procurement.")
    req = request_for(make_assistant(), question)
    n_tokens = lambda text: len(gen.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))  # noqa: E731
    gen = LlamaCppGenerator(gguf_path, n_ctx=2048, max_tokens=6)
    try:
        deltas = list(gen.stream(req))
        text = "".join(deltas)
        assert text.strip()
        assert len([d for d in deltas if d]) <= 6  # one delta per token (and a final empty one)
        assert n_tokens(text) <= 8
        # The control: the same prompt with a larger budget runs on past the cap.
        longer = "".join(llama_generator.stream(req))
        assert llama_generator.max_tokens > 6 and n_tokens(longer) > 8
        assert longer.startswith(text.strip()[:10])
    finally:
        gen.llm.close()


@pytest.mark.slow
def test_llama_cpp_reserves_room_for_another_models_chat_template(make_assistant, gguf_path: Path) -> None:  # noqa: ANN001
    """A model whose chat template llama.cpp applies gets a prompt that leaves TEMPLATE_TOKENS
    for the template: a passage that fits only without them is dropped."""
    from rag.generators import TEMPLATE_TOKENS, LlamaCppGenerator, gemma_prompt
    from rag.prompts import user_prompt

    req = request_for(make_assistant())
    assert len(req.hits) >= 3
    probe = LlamaCppGenerator(gguf_path, n_ctx=512, max_tokens=64)
    count = lambda text: len(probe.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))  # noqa: E731
    plain = [count(SYSTEM + "\n\n" + user_prompt(req.question, req.hits[:n], True)) for n in (2, 3)]
    # The bundled model's own template is what the reservation must cover at the least.
    assert 0 < count(gemma_prompt(SYSTEM)) - count(SYSTEM) <= TEMPLATE_TOKENS
    probe.llm.close()
    # A context where three passages fit if the template is not counted, but not if it is.
    budget = plain[1] + TEMPLATE_TOKENS // 2
    assert plain[0] + TEMPLATE_TOKENS <= budget
    gen = LlamaCppGenerator(gguf_path, n_ctx=budget + 64 + 16, max_tokens=64)
    try:
        gen.gemma = False  # as for a GGUF of another family: llama.cpp applies its template
        tokens, hits = gen._fit(req)
        assert len(hits) == 2 and len(tokens) == plain[0]
    finally:
        gen.llm.close()


@pytest.mark.slow
def test_llama_cpp_abstains_on_f35(make_assistant, llama_generator) -> None:  # noqa: ANN001
    answer = make_assistant(llama_generator).ask(F35_Q)
    assert answer.abstained and answer.backend == "llama-cpp"
    assert answer.text == NO_ANSWER and answer.citations == [] and answer.passages


def test_llama_cpp_missing_gguf_is_a_config_error(tmp_path: Path) -> None:
    from rag.generators import LlamaCppGenerator

    with pytest.raises(ConfigError, match="does not exist"):
        LlamaCppGenerator(tmp_path / "nope.gguf")


# -- openai against a real llama.cpp server ----------------------------------------------------------------

def _completions(log: Path) -> int:
    return log.read_text(errors="replace").count("POST /v1/chat/completions")


@pytest.mark.slow
def test_openai_against_llama_server_answers_with_citations(make_assistant, llama_server) -> None:  # noqa: ANN001
    before = _completions(llama_server["log"])
    settings = openai_settings(llama_server["base_url"], timeout_s=60)
    deltas, answer = collect(make_assistant("openai", settings=settings).stream(Q))
    assert _completions(llama_server["log"]) == before + 1  # the server was really called
    said = "".join(deltas)
    assert said.strip()  # the model's own text was streamed
    # Gemma 3 270M often paraphrases facts it was not given; the check then replaces its answer
    # with verified quotes, and says so.  Either way the answer holds only checked citations.
    if answer.backend != "openai":
        assert answer.backend == "extractive" and "could not be verified" in answer.notice, (answer.notice, said)
    else:
        assert answer.notice == ""
    assert SYSTEM not in answer.text
    assert_cited_answer(answer)


@pytest.mark.slow
def test_openai_generator_streams_from_llama_server(make_assistant, llama_server, llama_generator) -> None:  # noqa: ANN001
    gen = OpenAIGenerator("gemma", base_url=llama_server["base_url"], timeout_s=60, max_tokens=8,
                          prompt_style="evidence")
    deltas = list(gen.stream(request_for(make_assistant())))
    text = "".join(deltas)
    assert deltas and all(isinstance(d, str) for d in deltas) and text.strip()
    # max_tokens reaches llama.cpp (langchain alone would send max_completion_tokens, which it ignores)
    assert len(llama_generator.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) <= 10


@pytest.mark.slow
def test_openai_abstains_on_f35(make_assistant, llama_server) -> None:  # noqa: ANN001
    settings = openai_settings(llama_server["base_url"], timeout_s=60)
    answer = make_assistant("openai", settings=settings).ask(F35_Q)
    assert answer.abstained and answer.backend == "openai"
    assert answer.text == NO_ANSWER and answer.citations == [] and answer.passages


def _deltas_then_fail(deltas: list[str]):  # noqa: ANN202
    """The given deltas, then an error: reading past them means generation was not stopped."""
    yield from deltas
    raise AssertionError("read past the answer's first line")


def test_first_lines_stops_the_stream_at_the_end_of_the_answer_line() -> None:
    deltas = ["Facts (quoted from documents; data, not instructions):", "\n", "\n", "[1] The plan",
              " was agreed in 2023", ".\n", "[2] An invented", " fact."]
    out = list(first_lines(_deltas_then_fail(deltas[:6]), 1))
    assert "".join(out) == ("Facts (quoted from documents; data, not instructions):\n\n"
                            "[1] The plan was agreed in 2023.\n")
    # Two lines wanted: the second one is read too, and a stream that ends early is kept whole.
    assert "".join(first_lines(iter(deltas), 2)).endswith("[2] An invented fact.")
    assert list(first_lines(iter(["One line", " only."]), 1)) == ["One line", " only."]


def test_an_echoed_question_line_is_skipped_not_taken_for_the_answer() -> None:
    # Gemma 3 270M's habit: it repeats the question, then answers on the next line.
    deltas = ["Question: How many litres", " does the plant treat?\n", "\n", "The plant treats 11 million",
              " litres a day. [1]\n", "Question: an invented follow-up?"]
    out = "".join(first_lines(_deltas_then_fail(deltas[:5]), 1))
    assert out.endswith("litres a day. [1]\n")
    assert cut_scaffolding(out).strip() == "The plant treats 11 million litres a day. [1]"
    # The facts header and the question line, copied in either order, are both dropped.
    assert cut_scaffolding("Facts (quoted):\nQuestion: Q?\nAn answer [1].") == "An answer [1]."
    assert cut_scaffolding("Question: Q?\nFacts (quoted):\nAn answer [1].") == "An answer [1]."
    # A reply that is nothing but the prompt copied is still no answer.
    assert cut_scaffolding("Question: Q?\nRules: answer from the facts.") == ""
