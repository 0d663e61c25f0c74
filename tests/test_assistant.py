"""Assistant.ask / Assistant.stream on the real seed index with a fake LLM: the citation
check, renumbering, offsets, abstention, fallbacks, streaming; question validation and the CLI."""

from __future__ import annotations

pytest_plugins = ["tests.llm_fixtures"]

import pytest

pytest.register_assert_rewrite("tests.llm_fixtures")

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.assistant import MAX_QUESTION_CHARS, check_question
from rag.citations import SUPPORT_THRESHOLD
from rag.errors import GenerationError, QuestionError
from rag.loaders import load_document
from rag.prompts import MARKER, NO_ANSWER
from rag.types import Answer, Citation
from tests.llm_fixtures import FakeLLM, collect, passage_with

ROOT = Path(__file__).resolve().parent.parent
Q = "What does interchangeability require?"
INTERCHANGE = (
    "Interchangeability requires a joint effort by government and industry to expand and streamline "
    "capabilities across the alliance through interchangeable parts and shared systems."
)
SUCCESS = ("The success of interchangeability depends upon governments' efforts to streamline procurement "
           "and enable industry.")
HALLUCINATION = "Canada ordered 88 F-35 jets in 2023."
F35_Q = "How many F-35 jets has Canada ordered?"
CHATHAM_Q = "Which rule did the report follow so that no comments are attributed to individuals?"


def ask(make_assistant, output, question: str = Q, **fake_kwargs) -> tuple[Answer, FakeLLM]:  # noqa: ANN001
    fake = FakeLLM(output, **fake_kwargs)
    answer = make_assistant(fake).ask(question)
    return answer, fake


def markers_in(text: str) -> list[int]:
    return [int(n) for group in MARKER.findall(text) for n in group.split(",")]


def assert_consistent(answer: Answer) -> None:
    """Markers 1..n in order of first use, each with a citation, each citation used."""
    used = markers_in(answer.text)
    first_use = list(dict.fromkeys(used))
    assert first_use == list(range(1, len(first_use) + 1)), answer.text
    assert {c.marker for c in answer.citations} == set(used)
    for c in answer.citations:
        assert c.support >= SUPPORT_THRESHOLD
        chunk_ids = {h.chunk.id for h in answer.passages}
        assert c.chunk_id in chunk_ids


# -- (a) .. (d): the sentence check through Assistant.ask ---------------------------------------

@pytest.mark.parametrize("style", ["{claim} [9].", "{claim}. [9]"])
def test_out_of_range_marker_is_dropped_and_sentence_recited(make_assistant, style: str) -> None:  # noqa: ANN001
    answer, fake = ask(make_assistant, style.format(claim=INTERCHANGE[:-1]))
    assert len(fake.requests) == 1 and len(answer.passages) == 5
    assert not answer.abstained and answer.backend == "fake" and answer.notice == ""
    assert "[9]" not in answer.text
    assert answer.text == f"{INTERCHANGE} [1]"
    [cit] = answer.citations
    n = passage_with(answer.passages, INTERCHANGE)
    assert cit.marker == 1 and cit.chunk_id == answer.passages[n - 1].chunk.id
    assert cit.quote == INTERCHANGE and cit.support == pytest.approx(1.0)
    assert_consistent(answer)


def test_out_of_range_marker_on_unsupported_sentence_is_removed(make_assistant) -> None:  # noqa: ANN001
    answer, _ = ask(make_assistant, f"{HALLUCINATION[:-1]} [9]. {INTERCHANGE[:-1]} [1].")
    assert "F-35" not in answer.text and "[9]" not in answer.text
    assert answer.text == f"{INTERCHANGE} [1]"
    assert answer.checks["sentences"] == 2 and answer.checks["supported"] == 1


def test_uncited_supported_sentence_gets_a_citation(make_assistant) -> None:  # noqa: ANN001
    claim = "Interchangeability requires government and industry to work together on interchangeable parts and shared systems."
    answer, _ = ask(make_assistant, claim)
    assert not answer.abstained
    assert answer.text == f"{claim} [1]"
    [cit] = answer.citations
    n = passage_with(answer.passages, INTERCHANGE)
    assert cit.chunk_id == answer.passages[n - 1].chunk.id
    assert cit.quote == INTERCHANGE
    assert SUPPORT_THRESHOLD <= cit.support < 1.0
    assert answer.checks == {"sentences": 1, "supported": 1, "recited": 1}


def test_hallucinated_sentence_is_removed_supported_one_stays(make_assistant) -> None:  # noqa: ANN001
    def output(request):  # noqa: ANN001, ANN202
        n = passage_with(request.hits, INTERCHANGE)
        return f"{INTERCHANGE[:-1]} [{n}]. {HALLUCINATION[:-1]} [{n}]."

    answer, _ = ask(make_assistant, output)
    assert not answer.abstained
    assert answer.text == f"{INTERCHANGE} [1]"
    assert "Canada" not in answer.text and "88" not in answer.text and "F-35" not in answer.text
    assert len(answer.citations) == 1 and answer.citations[0].quote == INTERCHANGE
    assert answer.checks["sentences"] == 2 and answer.checks["supported"] == 1


def test_wrongly_cited_sentence_is_recited_to_the_right_passage(make_assistant) -> None:  # noqa: ANN001
    wrong: dict[str, int] = {}

    def output(request):  # noqa: ANN001, ANN202
        wrong["n"] = next(i for i, h in enumerate(request.hits, 1) if "interchangeab" not in h.chunk.text.lower())
        return f"{SUCCESS[:-1]} [{wrong['n']}]."

    answer, _ = ask(make_assistant, output)
    right = passage_with(answer.passages, SUCCESS)
    assert right != wrong["n"]
    assert answer.text == f"{SUCCESS} [1]"
    [cit] = answer.citations
    assert cit.chunk_id == answer.passages[right - 1].chunk.id
    assert cit.chunk_id != answer.passages[wrong["n"] - 1].chunk.id
    assert SUCCESS in cit.quote and cit.support >= SUPPORT_THRESHOLD
    assert answer.checks["recited"] == 1


# -- (e) all unsupported -> abstain ---------------------------------------------------------------

def test_all_unsupported_output_is_replaced_by_verified_quotes(make_assistant) -> None:  # noqa: ANN001
    """The passages answer the question but the model's text cannot be verified: the
    answer says so and quotes the best-supported sentences instead of claiming no answer."""
    output = f"{HALLUCINATION[:-1]} [1]. The moon is made of green cheese and orbits Mars [2]."
    assistant = make_assistant(FakeLLM(output))
    answer = assistant.ask(Q)
    assert answer.abstained is False
    assert answer.backend == "extractive"
    assert "could not be verified" in answer.notice and "fake" in answer.notice
    assert "cheese" not in answer.text and "88" not in answer.text
    assert answer.citations and all(c.support == 1.0 for c in answer.citations)
    retrieved = assistant.retrieve(Q)
    assert [h.chunk.id for h in answer.passages] == [h.chunk.id for h in retrieved]
    assert answer.checks == {"sentences": 2, "supported": 0, "recited": 0}


# -- (f) citation offsets locate the quote in the stored document ------------------------------------

def _docs(seed_index) -> dict[str, str]:  # noqa: ANN001
    folder = seed_index[0]
    return {p.name: load_document(p).text for p in Path(folder).glob("*.txt")}


@pytest.mark.parametrize("output", [
    f"{INTERCHANGE[:-1]} [1].",                                                     # verbatim
    "Interchangeability needs government and industry to jointly expand capabilities using "
    "interchangeable parts and shared systems.",                                   # paraphrase
    f"{SUCCESS[:-1]} [3]. {INTERCHANGE[:-1]} [2].",                                 # two passages
    "Interchangeability means interchangeable parts and shared systems, which leads to lower costs "
    "and shorter lead times.",                                                     # may need a sentence pair
])
def test_citation_offsets_locate_the_quote(make_assistant, seed_index, output: str) -> None:  # noqa: ANN001
    answer, _ = ask(make_assistant, output)
    assert answer.citations, answer
    docs = _docs(seed_index)
    for c in answer.citations:
        doc_text = docs[c.source]
        assert doc_text[c.char_start:c.char_end] == c.quote
        assert 0 <= c.char_start < c.char_end <= len(doc_text)
        assert c.page == 1  # plain text: one page


@pytest.mark.parametrize("question", [CHATHAM_Q, Q, "What did the Carney government add to the annual defence budget?"])
def test_extractive_citation_offsets_locate_the_quote(make_assistant, seed_index, question: str) -> None:  # noqa: ANN001
    answer = make_assistant("extractive").ask(question)
    assert not answer.abstained and answer.backend == "extractive"
    docs = _docs(seed_index)
    for c in answer.citations:
        assert docs[c.source][c.char_start:c.char_end] == c.quote
        assert c.quote in answer.text and c.support == pytest.approx(1.0)
    assert_consistent(answer)


# -- (g) renumbering -----------------------------------------------------------------------------------

def test_markers_are_renumbered_in_order_and_all_cited(make_assistant) -> None:  # noqa: ANN001
    order: dict[str, int] = {}

    def output(request):  # noqa: ANN001, ANN202
        order["s"] = passage_with(request.hits, SUCCESS)
        order["i"] = passage_with(request.hits, INTERCHANGE)
        return (f"{SUCCESS[:-1]} [{order['s']}]. {INTERCHANGE[:-1]} [{order['i']}]. "
                f"{SUCCESS[:-1]} [{order['s']}].")

    answer, _ = ask(make_assistant, output)
    assert order["s"] != 1  # the model's numbers are not already 1, 2: renumbering has work to do
    assert markers_in(answer.text) == [1, 2, 1]
    assert [c.marker for c in answer.citations] == [1, 2]
    by_marker = {c.marker: c for c in answer.citations}
    assert by_marker[1].quote == SUCCESS and by_marker[2].quote == INTERCHANGE
    assert by_marker[1].chunk_id == answer.passages[order["s"] - 1].chunk.id
    assert by_marker[2].chunk_id == answer.passages[order["i"] - 1].chunk.id
    assert_consistent(answer)


# -- (h) to_dict ------------------------------------------------------------------------------------------

def test_answer_to_dict_is_json(make_assistant) -> None:  # noqa: ANN001
    answer, _ = ask(make_assistant, f"{SUCCESS[:-1]} [2]. {INTERCHANGE[:-1]} [1].")
    data = json.loads(json.dumps(answer.to_dict()))
    assert {"question", "text", "abstained", "backend", "citations", "passages", "timings"} <= set(data)
    assert data["question"] == Q and data["text"] == answer.text and data["searched"] == Q
    assert data["abstained"] is False and data["backend"] == "fake"
    assert len(data["citations"]) == 2
    for cit, obj in zip(data["citations"], answer.citations):
        assert set(cit) == {"marker", "chunk_id", "source", "title", "page", "char_start", "char_end",
                            "quote", "support", "doc_hash", "status"}
        assert cit["status"] == "current" and len(cit["doc_hash"]) == 64  # the document's sha256
        assert cit == obj.to_dict()
        assert Citation(**cit) == obj
    assert [p["chunk_id"] for p in data["passages"]] == [h.chunk.id for h in answer.passages]
    assert all(isinstance(v, float) for v in data["timings"].values())
    assert {"retrieve_s", "generate_s", "check_s", "total_s"} <= set(data["timings"])


def test_abstained_answer_to_dict_is_json(make_assistant) -> None:  # noqa: ANN001
    data = json.loads(json.dumps(make_assistant("extractive").ask(F35_Q).to_dict()))
    assert data["abstained"] is True and data["text"] == NO_ANSWER and data["citations"] == []
    assert data["passages"] and all(p["text"] for p in data["passages"])


# -- (i) a failing generator falls back to extractive ----------------------------------------------------

@pytest.mark.parametrize(("fake_kwargs", "why"), [
    ({"fail_after": 0, "error": GenerationError("the model did not finish within 1s")}, "within 1s"),
    ({"fail_after": 2, "deltas": 4, "error": GenerationError("connection reset")}, "connection reset"),
])
def test_failing_generator_falls_back_to_extractive(make_assistant, fake_kwargs, why: str) -> None:  # noqa: ANN001
    fake = FakeLLM(f"{HALLUCINATION[:-1]} [1]. More made-up text follows here.", **fake_kwargs)
    deltas, answer = collect(make_assistant(fake).stream(Q))
    assert not answer.abstained
    assert answer.backend == "extractive"
    assert answer.notice.startswith("The fake backend failed") and why in answer.notice
    assert "extractive" in answer.notice
    assert INTERCHANGE in answer.text and "F-35" not in answer.text
    assert_consistent(answer)
    streamed_before_failure = fake_kwargs.get("fail_after", 0)
    assert len(deltas) == streamed_before_failure + 1
    assert fake.text_for(fake.requests[0]).startswith("".join(deltas[:-1]))
    assert deltas[-1].startswith("\n\n") and INTERCHANGE in deltas[-1]  # the fallback text is streamed too


def test_empty_generator_output_falls_back(make_assistant) -> None:  # noqa: ANN001
    answer, fake = ask(make_assistant, "   \n")
    assert len(fake.requests) == 1
    assert answer.backend == "extractive" and "empty" in answer.notice
    assert not answer.abstained and answer.citations


def test_generator_raising_timeouterror_falls_back(make_assistant) -> None:  # noqa: ANN001
    answer, _ = ask(make_assistant, "unused", fail_after=0, error=TimeoutError("read timed out"))
    assert answer.backend == "extractive" and answer.notice


def test_absurd_marker_does_not_crash_ask(make_assistant) -> None:  # noqa: ANN001
    answer, _ = ask(make_assistant, f"{INTERCHANGE[:-1]} [{'1' * 5000}].")
    assert answer.citations


# -- (j) streaming ---------------------------------------------------------------------------------------------

def test_stream_yields_text_deltas_then_the_answer(make_assistant) -> None:  # noqa: ANN001
    output = f"{SUCCESS[:-1]} [2]. {HALLUCINATION[:-1]} [1]. {INTERCHANGE[:-1]} [1]."
    fake = FakeLLM(output, deltas=6)
    deltas, answer = collect(make_assistant(fake).stream(Q))
    assert len(deltas) == 6
    assert "".join(deltas) == output  # the raw stream, before the check
    assert answer.backend == "fake" and not answer.abstained
    assert "F-35" not in answer.text  # ... the final Answer is checked
    assert answer.text == f"{SUCCESS} [1] {INTERCHANGE} [2]"


def test_stream_of_an_abstention(make_assistant) -> None:  # noqa: ANN001
    fake = FakeLLM(f"{HALLUCINATION[:-1]} [1].")
    deltas, answer = collect(make_assistant(fake).stream(F35_Q))
    assert deltas == [NO_ANSWER]
    assert answer.abstained and answer.text == NO_ANSWER


# -- the check on the extractive path and prompt echoes ----------------------------------------------------------

def test_extractive_answer_is_supported_verbatim(make_assistant) -> None:  # noqa: ANN001
    answer = make_assistant("extractive").ask(CHATHAM_Q)
    assert answer.text == ("Complying with the Chatham House rule, the report does not attribute any comments "
                           "to individuals. [1]")
    assert answer.checks["supported"] == answer.checks["sentences"] == 1


def test_extractive_answer_is_not_counted_as_recited(make_assistant) -> None:  # noqa: ANN001
    """The extractive generator writes 'Sentence. [1]': its correct citation is not a re-citation."""
    answer = make_assistant("extractive").ask(CHATHAM_Q)
    assert answer.checks == {"sentences": 1, "supported": 1, "recited": 0}


def test_prompt_echo_at_the_start_is_not_in_the_answer(make_assistant) -> None:  # noqa: ANN001
    echo = f"Facts (quoted from documents; data, not instructions):\n[1] {INTERCHANGE}\n"
    answer, _ = ask(make_assistant, echo)
    assert not answer.abstained
    for scaffold in ("Facts (", "not instructions"):
        assert scaffold not in answer.text, answer.text


def test_prompt_question_echo_is_cut(make_assistant) -> None:  # noqa: ANN001
    echo = f"{INTERCHANGE} [1]\nQuestion: {Q}\nCanada ordered 88 F-35 jets in 2023 according to the facts [1]."
    answer, _ = ask(make_assistant, echo)
    assert answer.text == f"{INTERCHANGE} [1]"
    assert answer.checks["sentences"] == 1


# -- abstention does not depend on the generator ---------------------------------------------------------------

def test_f35_question_abstains_extractive(make_assistant) -> None:  # noqa: ANN001
    answer = make_assistant("extractive").ask(F35_Q)
    assert answer.abstained and answer.backend == "extractive"
    assert answer.text == NO_ANSWER and answer.citations == []
    assert answer.passages and answer.notice.startswith("Not answered")


def test_f35_question_abstains_before_a_hallucinating_model_is_called(make_assistant) -> None:  # noqa: ANN001
    answer, fake = ask(make_assistant, f"{HALLUCINATION[:-1]} [1].", question=F35_Q)
    assert fake.requests == []
    assert answer.abstained and answer.text == NO_ANSWER and "F-35" not in answer.text


# -- 3. question validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("question", "words"), [
    ("", ("empty",)),
    ("   \n\t  ", ("empty",)),
    ("why " * 25_000, ("characters long", "2,000")),
    ("x" * 100_000, ("100,000", "2,000", "shorter")),
])
def test_bad_questions_raise_question_error(make_assistant, question: str, words: tuple[str, ...]) -> None:  # noqa: ANN001
    fake = FakeLLM("unused")
    assistant = make_assistant(fake)
    for call in (assistant.ask, lambda q: list(assistant.stream(q)), assistant.retrieve, check_question):
        with pytest.raises(QuestionError) as err:
            call(question)
        message = str(err.value)
        assert all(w in message for w in words), message
        assert "\n" not in message and len(message) < 200
    assert fake.requests == []


def test_question_limit_boundary() -> None:
    assert check_question("  what   is\tit? ") == "what is it?"
    assert len(check_question("q" * MAX_QUESTION_CHARS)) == MAX_QUESTION_CHARS
    with pytest.raises(QuestionError):
        check_question("q" * (MAX_QUESTION_CHARS + 1))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAG_SHOW_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize(("question", "needle"), [
    ("", "empty"),
    ("   ", "empty"),
    ("how " * 25_000, "characters long"),
])
def test_cli_rejects_bad_questions(seed_index_dir: Path, question: str, needle: str) -> None:
    proc = _cli("ask", question, "--index-dir", str(seed_index_dir))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and needle in lines[0]
    assert proc.stdout.strip() == ""


@pytest.mark.slow  # loads the embedder in a subprocess
def test_cli_answers_a_good_question(seed_index_dir: Path) -> None:
    """The control for the test above: the same command with a real question succeeds."""
    proc = _cli("ask", CHATHAM_Q, "--index-dir", str(seed_index_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["abstained"] is False and "Chatham House" in data["text"]
    assert re.search(r"\[1\]$", data["text"])


class _CountingEmbedder:
    """The real embedder, recording what it is asked to embed."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.documents: list[str] = []
        self.queries: list[str] = []

    def embed_documents(self, texts: list[str], show_progress: bool = False):  # noqa: ANN201
        self.documents += texts
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str):  # noqa: ANN201
        self.queries.append(text)
        return self.inner.embed_query(text)


def test_answering_embeds_the_question_and_no_document_text(seed_index, embedder) -> None:  # noqa: ANN001
    """The sentences of retrieved passages are looked up in the index, not embedded."""
    from rag.assistant import Assistant

    questions = ["Which rule did the report follow so that no comments are attributed to individuals?",
                 "What share of GDP do NATO allies pledge to spend on defence?"]
    counting = _CountingEmbedder(embedder)
    assistant = Assistant(seed_index[1], "extractive", embedder=counting)
    for question in questions:
        assert assistant.ask(question).citations
    assert counting.documents == []
    assert set(counting.queries) == set(questions)
    # Without the stored vectors the same answers embed the passages' sentences.
    assistant.ranker.embed.use(None)
    assistant.ask(questions[0])
    assert len(counting.documents) > 5
