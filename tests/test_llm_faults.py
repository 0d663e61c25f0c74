"""LLM backend faults: the assistant falls back to an extractive answer with a notice, in time.

Faults of the OpenAI-compatible backend (LangChain ChatOpenAI): the server is down,
accepts and never answers, answers garbage (not JSON, an event that is not JSON,
no choices, empty content, HTTP 500), or keeps the connection alive without ever
sending a token; no API key.  Faults of the llama-cpp backend: a missing or a
corrupt GGUF file.  Each answer must come within the timeout (+5 s), be the
extractive answer, carry a notice naming the failure, and cite the passage.
A slow test does the same through the real UI in a browser.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rag.assistant import Assistant
from rag.cli import app
from rag.config import LLMSettings, Settings
from rag.errors import ConfigError
from rag.generators import get_generator
from rag.indexing import index_folder
from rag.types import Answer

from reliability_helpers import AppProcess, FakeLLMServer, SilentServer, closed_port

TIMEOUT_S = 2.0
QUESTION = "How many spare propeller blades does the Zephyr Harbour depot store?"
FACT = "The Zephyr Harbour depot stores exactly 4,812 spare propeller blades for the coastal patrol fleet."
DOC = f"""# Zephyr Harbour Logistics Note

{FACT}
The depot was opened in 2019 and is run by a civilian contractor.

Inspectors visit the depot twice a year to count the stock.
"""


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    base = tmp_path_factory.mktemp("llm-faults")
    (base / "docs").mkdir()
    (base / "docs" / "zephyr.md").write_text(DOC, encoding="utf-8")
    index_folder(base / "docs", base / "index", embedder, show_progress=False)
    return base / "index"


@pytest.fixture
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "RAG_LLM__OPENAI_API_KEY", "RAG_LLM__OPENAI_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def _assistant(index_dir: Path, embedder, base_url: str | None, timeout_s: float = TIMEOUT_S,
               **llm: object) -> Assistant:
    settings = Settings()
    settings.llm.openai_base_url = base_url
    settings.llm.timeout_s = timeout_s
    for key, value in llm.items():
        setattr(settings.llm, key, value)
    return Assistant(index_dir, "openai", embedder=embedder, settings=settings)


def _ask_bounded(assistant: Assistant, limit: float) -> tuple[Answer | BaseException | None, float]:
    """(the answer or the exception, seconds); None if ``ask`` was still running after ``limit`` s."""
    box: list[Answer | BaseException] = []

    def run() -> None:
        try:
            box.append(assistant.ask(QUESTION))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            box.append(exc)

    t0 = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    return (box[0] if box else None), time.monotonic() - t0


def _assert_fallback(answer: object, elapsed: float, *words: str, timeout_s: float = TIMEOUT_S) -> Answer:
    assert answer is not None, f"no answer within {timeout_s + 5:.0f} s"
    assert isinstance(answer, Answer), repr(answer)
    assert elapsed < timeout_s + 5, elapsed
    assert answer.backend == "extractive"
    assert not answer.abstained
    assert "4,812" in answer.text and [c.source for c in answer.citations] == ["zephyr.md"]
    assert answer.notice.startswith("The openai backend failed (") or answer.notice.startswith("The llama-cpp backend failed (")
    assert answer.notice.endswith("this answer was composed extractively instead.")
    for word in words:
        assert word.lower() in answer.notice.lower(), answer.notice
    return answer


def test_a_working_endpoint_is_used(index_dir: Path, embedder) -> None:
    """The control: the same fake server with a good reply gives an openai answer, no notice."""
    with FakeLLMServer("reply", f"{FACT} [1]") as server:
        answer, elapsed = _ask_bounded(_assistant(index_dir, embedder, server.base_url), TIMEOUT_S + 5)
        assert server.requests and server.requests[0].get("stream") is True
    assert isinstance(answer, Answer)
    assert answer.backend == "openai" and answer.notice == ""
    assert "4,812" in answer.text and answer.citations


def test_server_down(index_dir: Path, embedder) -> None:
    answer, elapsed = _ask_bounded(
        _assistant(index_dir, embedder, f"http://127.0.0.1:{closed_port()}/v1"), TIMEOUT_S + 5)
    _assert_fallback(answer, elapsed, "connection")


def test_server_accepts_and_never_answers(index_dir: Path, embedder) -> None:
    with SilentServer() as server:
        answer, elapsed = _ask_bounded(_assistant(index_dir, embedder, server.base_url), TIMEOUT_S + 5)
        assert server.accepted >= 1
    _assert_fallback(answer, elapsed, "timed out")
    assert elapsed >= TIMEOUT_S * 0.9  # it did wait for the server, not fail early


@pytest.mark.parametrize(("mode", "word"), [
    ("invalid_json", "failed"),
    ("sse_garbage", "JSONDecodeError"),
    ("empty_choices", "empty answer"),
    ("empty_content", "empty answer"),
    ("http_500", "500"),
])
def test_garbage_reply(mode: str, word: str, index_dir: Path, embedder) -> None:
    with FakeLLMServer(mode) as server:
        answer, elapsed = _ask_bounded(_assistant(index_dir, embedder, server.base_url), TIMEOUT_S + 5)
        assert server.requests
    _assert_fallback(answer, elapsed, word)


def test_server_trickles_keepalives_past_the_timeout(index_dir: Path, embedder) -> None:
    with FakeLLMServer("trickle") as server:
        answer, elapsed = _ask_bounded(_assistant(index_dir, embedder, server.base_url), TIMEOUT_S + 5)
    # leaving the block stopped the server, which releases a hung request
    _assert_fallback(answer, elapsed, "2")


def test_missing_api_key_is_a_config_error_naming_the_variable(no_openai_env: None) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        get_generator("openai", LLMSettings())


def test_missing_api_key_falls_back_with_a_notice(index_dir: Path, embedder, no_openai_env: None) -> None:
    answer, elapsed = _ask_bounded(_assistant(index_dir, embedder, None), TIMEOUT_S + 5)
    _assert_fallback(answer, elapsed, "OPENAI_API_KEY")


def test_missing_api_key_on_the_command_line(index_dir: Path, no_openai_env: None) -> None:
    result = CliRunner().invoke(app, ["ask", QUESTION, "--backend", "openai", "--index-dir", str(index_dir)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "4,812" in out
    assert "The openai backend failed" in out and "OPENAI_API_KEY" in out
    assert "Traceback" not in result.stdout + result.stderr


def test_llama_cpp_with_a_missing_model_file(index_dir: Path, embedder, tmp_path: Path) -> None:
    settings = Settings()
    settings.llm.gguf_path = tmp_path / "no-such-model.gguf"
    assistant = Assistant(index_dir, "llama-cpp", embedder=embedder, settings=settings)
    answer, elapsed = _ask_bounded(assistant, 30)
    _assert_fallback(answer, elapsed, "does not exist", "no-such-model.gguf", timeout_s=25)


def test_llama_cpp_with_a_corrupt_model_file(index_dir: Path, embedder, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + b"\x00\xff" * 4096)
    settings = Settings()
    settings.llm.gguf_path = bad
    assistant = Assistant(index_dir, "llama-cpp", embedder=embedder, settings=settings)
    answer, elapsed = _ask_bounded(assistant, 30)
    _assert_fallback(answer, elapsed, "cannot load GGUF model", timeout_s=25)


# -- in the real UI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_backend_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    base = tmp_path_factory.mktemp("llm-faults-app")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "zephyr.md").write_text(DOC, encoding="utf-8")
    env = {"RAG_LLM__OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1", "RAG_LLM__TIMEOUT_S": str(TIMEOUT_S)}
    with AppProcess(base, corpus, env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_ui_shows_the_fallback_notice(dead_backend_app: AppProcess) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(dead_backend_app.url, timeout=60_000)
            backend = page.locator("#rag-backend input")
            expect(backend).to_be_visible(timeout=60_000)
            backend.click()
            page.get_by_role("option", name=re.compile("OpenAI-compatible")).click()
            expect(backend).to_have_value(re.compile("OpenAI-compatible"))
            box = page.locator("#rag-question textarea")
            box.fill(QUESTION)
            t0 = time.monotonic()
            box.press("Enter")
            answer = page.locator("#rag-chat .rag-answer:not(.rag-partial)")
            expect(answer).to_have_count(1, timeout=60_000)
            elapsed = time.monotonic() - t0
            expect(answer.locator(".rag-notice")).to_contain_text("The openai backend failed")
            expect(answer.locator(".rag-notice")).to_contain_text("composed extractively instead")
            expect(answer).to_contain_text("4,812")
            expect(answer.locator(".rag-meta")).to_contain_text("extractive")
            expect(page.locator("#rag-sources mark")).to_contain_text("4,812")
            expect(page.locator("#rag-chat")).not_to_contain_text("Traceback")
            assert elapsed < TIMEOUT_S + 5 + 10  # + browser and queue latency
            assert dialogs == []
        finally:
            browser.close()
