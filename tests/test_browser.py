"""The real app in a real browser: `python app.py` in a subprocess, driven by Playwright.

Uses the Debian chromium (no download) in headless mode.  The app indexes a tmp
copy of the seed reports into a tmp index dir; nothing outside tmp is written
except docs/screenshot.png (shown in the README), and that only when
RAG_UPDATE_SCREENSHOT=1; otherwise the screenshot goes to pytest's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.loaders import is_supported

pytestmark = pytest.mark.slow

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT_S = 90
ANSWER_TIMEOUT_MS = 60_000
UI_TIMEOUT_MS = 15_000
SCREENSHOT = ROOT / "docs" / "screenshot.png"

CHATHAM = "Which rule did the report follow so that no comments are attributed to individuals?"
NICE = "What does the NICE pledge commit NATO to?"
DETERRENCE = "Why is defence production important for deterrence?"

UPLOAD_TITLE = "Zephyr Harbour Logistics Note"
UPLOAD_MD = f"""# {UPLOAD_TITLE}

The Zephyr Harbour depot stores exactly 4,812 spare propeller blades for the coastal patrol fleet.
The depot was opened in 2019 and is run by a civilian contractor.
"""

HOSTILE_TITLE = "Quartz Valley <img src=x onerror=alert(1)> Bulletin"
HOSTILE_MD = f"""# {HOSTILE_TITLE}

The Quartz Valley observatory recorded 913 meteors during the August survey night.
The night log also shows this markup: <img src=x onerror=alert(1)> and <script>alert(2)</script> end.
A link in the log reads [open the log](javascript:alert(3)) for reference.
The observatory director is Imelda Vance.
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


#: The corpus folder the module's app serves (set by ``app_url``).
APP_CORPUS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python app.py` over a tmp copy of the seeds, stopped by PID at the end."""
    base = tmp_path_factory.mktemp("app")
    corpus = base / "corpus"
    shutil.copytree(ROOT / "seeds", corpus)
    APP_CORPUS["path"] = corpus
    for path in [corpus, *corpus.rglob("*")]:  # the repo's seeds are read-only
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = _free_port()
    env = dict(os.environ)
    env.update({
        "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "RAG_PATHS__CORPUS_DIR": str(corpus), "RAG_PATHS__INDEX_DIR": str(base / "index"),
        "RAG_LLM__BACKEND": "extractive",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAG_SHOW_PROGRESS": "0",
    })
    for name in ("OPENAI_API_KEY", "RAG_LLM__OPENAI_API_KEY", "RAG_LLM__OPENAI_BASE_URL"):
        env.pop(name, None)  # no OpenAI backend in this app
    log_path = base / "app.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _serving(url):
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not serve within {START_TIMEOUT_S}s:\n"
                            f"{log_path.read_text(errors='replace')}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, log_text


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Session:
    """One browser tab on the app, counting any JavaScript dialog (alert/confirm/prompt)."""

    def __init__(self, browser: object, url: str) -> None:
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": 1400, "height": 900}, permissions=["clipboard-read", "clipboard-write"])
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.goto(url, timeout=30_000)
        expect(self.question_box).to_be_visible(timeout=30_000)

    def _on_dialog(self, dialog: object) -> None:
        self.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    @property
    def question_box(self):  # noqa: ANN201
        return self.page.locator("#rag-question textarea")

    def ask(self, question: str) -> None:
        """Type the question, press Enter, wait until the final answer is rendered."""
        answers = self.page.locator("#rag-chat .rag-answer:not(.rag-partial), #rag-chat .rag-error")
        before = answers.count()
        self.question_box.fill(question)
        self.question_box.press("Enter")
        expect(answers).to_have_count(before + 1, timeout=ANSWER_TIMEOUT_MS)
        expect(self.page.locator("#rag-chat .rag-partial")).to_have_count(0, timeout=ANSWER_TIMEOUT_MS)

    def upload(self, path: Path) -> None:
        self.page.get_by_role("tab", name="Documents").click()
        self.page.locator("#rag-upload input[type=file]").set_input_files(str(path))
        expect(self.page.locator("#rag-upload-status")).to_contain_text("Added", timeout=ANSWER_TIMEOUT_MS)
        self.page.get_by_role("tab", name="Ask").click()
        expect(self.question_box).to_be_visible()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def session(browser: object, app_url: str) -> Iterator[Session]:
    s = Session(browser, app_url)
    try:
        yield s
    finally:
        s.close()


def test_answer_streams_in_and_sources_highlight_the_quote(session: Session) -> None:
    page = session.page
    session.ask(CHATHAM)
    answer = page.locator("#rag-chat .rag-answer").last
    expect(answer).to_contain_text("Chatham House")
    expect(answer.locator("a.rag-marker")).to_have_count(1)
    mark = page.locator("#rag-sources .rag-source mark", has_text="Chatham House")
    expect(mark).to_be_visible()
    expect(page.locator("#rag-sources .rag-source .rag-title").first).to_contain_text("Force Development")
    expect(page.locator("#rag-sources .rag-source .rag-page").first).to_contain_text("page")
    # "Copy answer with sources" puts the answer and a numbered source list on the clipboard.
    expected = re.compile(r"Chatham House.*\[1\]\n\nSources:\n\[1\] Force Development.*, page \d+, “.*Chatham House")
    page.locator("#rag-copy-button").click()
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while not expected.search(page.evaluate("navigator.clipboard.readText()")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert expected.search(page.evaluate("navigator.clipboard.readText()"))
    page.get_by_text("Answer with sources (Markdown)").click()
    expect(page.locator("#rag-copy textarea")).to_have_value(expected)
    assert session.dialogs == []


def test_example_question_is_asked_on_click(session: Session) -> None:
    page = session.page
    page.get_by_role("button", name="Chatham House rule?").click()
    expect(page.locator("#rag-chat .rag-answer:not(.rag-partial)")).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#rag-chat .rag-question")).to_have_text(CHATHAM)
    expect(page.locator("#rag-sources mark", has_text="Chatham House")).to_be_visible()


def test_each_browser_session_has_its_own_conversation(session: Session, browser: object, app_url: str) -> None:
    session.ask(CHATHAM)
    other = Session(browser, app_url)
    try:
        expect(other.page.locator("#rag-chat .rag-answer")).to_have_count(0)
        expect(other.page.locator("#rag-sources")).to_contain_text("Ask a question")
        other.ask(NICE)
        expect(other.page.locator("#rag-chat .rag-question")).to_have_count(1)
    finally:
        other.close()
    expect(session.page.locator("#rag-chat .rag-question")).to_have_count(1)
    expect(session.page.locator("#rag-chat .rag-question")).to_have_text(CHATHAM)
    # "New conversation" empties this session's chat and sources.
    session.page.locator("#rag-clear").click()
    expect(session.page.locator("#rag-chat .rag-question")).to_have_count(0)
    expect(session.page.locator("#rag-sources")).to_contain_text("Ask a question")


def test_follow_up_is_searched_with_the_previous_question(session: Session) -> None:
    page = session.page
    session.ask("What is NATO's Defence Production Action Plan?")
    first = page.locator("#rag-chat .rag-answer").last
    expect(first).to_contain_text("Defence Production Action Plan")
    expect(first.locator(".rag-searched")).to_have_count(0)  # asked on its own: searched as asked
    session.ask("When was it agreed?")
    follow = page.locator("#rag-chat .rag-answer").last
    expect(follow.locator(".rag-searched")).to_contain_text(
        "Searched for: When was it agreed? (NATO's Defence Production Action Plan)")
    expect(follow.locator(".rag-answer-text")).to_contain_text("2023")
    expect(follow.locator("a.rag-marker")).not_to_have_count(0)
    # A new conversation forgets the previous turns: asked alone, nothing is carried over.
    page.locator("#rag-clear").click()
    expect(page.locator("#rag-chat .rag-question")).to_have_count(0)
    session.ask("When was it agreed?")
    expect(page.locator("#rag-chat .rag-searched")).to_have_count(0)


def test_backend_choices_hide_openai_unless_configured(session: Session) -> None:
    page = session.page
    backend = page.locator("#rag-backend input")
    expect(backend).to_have_value(re.compile("Extractive"))
    backend.click()
    options = page.get_by_role("option")
    expect(options).to_have_count(2)
    expect(options.nth(1)).to_contain_text("Local model")
    page.keyboard.press("Escape")


def test_empty_question_shows_a_message_not_a_traceback(session: Session) -> None:
    session.ask("   ")
    error = session.page.locator("#rag-chat .rag-error").last
    expect(error).to_contain_text("empty")
    expect(session.page.locator("#rag-chat")).not_to_contain_text("Traceback")


def test_clicking_a_marker_brings_its_source_into_view(session: Session) -> None:
    page = session.page
    session.ask(CHATHAM)
    session.ask(NICE)
    # The first answer's source is now folded away under "Earlier questions".
    first_source = page.locator("#rag-src-0-1")
    expect(first_source).to_be_hidden()
    page.locator("#rag-chat .rag-answer").first.locator("a.rag-marker").first.click()
    expect(first_source).to_be_visible()
    expect(first_source).to_have_class(re.compile(r"\brag-active\b"))
    expect(first_source).to_be_focused()
    expect(first_source).to_be_in_viewport()
    expect(first_source.locator("mark")).to_contain_text("Chatham House")
    # Clicking a marker of the latest answer moves the highlight there.
    marker = page.locator("#rag-chat .rag-answer").last.locator("a.rag-marker").last
    target = (marker.get_attribute("href") or "").lstrip("#")
    assert re.fullmatch(r"rag-src-1-\d+", target)
    marker.click()
    latest = page.locator(f"#{target}")
    expect(latest).to_have_class(re.compile(r"\brag-active\b"))
    expect(latest).to_be_in_viewport()
    expect(first_source).not_to_have_class(re.compile(r"\brag-active\b"))
    assert "#" not in page.url  # the click scrolled; it did not navigate


def test_screenshot_of_the_main_view(session: Session, tmp_path: Path) -> None:
    page = session.page
    shot = SCREENSHOT if os.environ.get("RAG_UPDATE_SCREENSHOT") == "1" else tmp_path / "screenshot.png"
    session.ask(CHATHAM)
    session.ask(DETERRENCE)
    page.locator("#rag-chat .rag-answer").last.locator("a.rag-marker").first.click()
    expect(page.locator("#rag-src-1-1")).to_have_class(re.compile(r"\brag-active\b"))
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
    page.wait_for_timeout(600)  # let the smooth scroll settle
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), timeout=UI_TIMEOUT_MS)
    assert shot.stat().st_size > 20_000


def test_uploaded_file_is_indexed_and_cited(session: Session, tmp_path: Path) -> None:
    page = session.page
    doc = tmp_path / "zephyr-harbour-note.md"
    doc.write_text(UPLOAD_MD, encoding="utf-8")
    session.upload(doc)
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#rag-documents")).to_contain_text(UPLOAD_TITLE)
    expect(page.locator("#rag-documents")).to_contain_text("zephyr-harbour-note.md")
    page.get_by_role("tab", name="Ask").click()
    session.ask("How many spare propeller blades does the Zephyr Harbour depot store?")
    expect(page.locator("#rag-chat .rag-answer").last).to_contain_text("4,812")
    expect(page.locator("#rag-sources .rag-source .rag-title").first).to_have_text(UPLOAD_TITLE)
    expect(page.locator("#rag-sources .rag-source mark").first).to_contain_text("4,812")


def test_bad_upload_shows_a_message_and_keeps_the_index(session: Session, tmp_path: Path) -> None:
    page = session.page
    page.get_by_role("tab", name="Documents").click()
    # One row per document of the app's folder (the seeds and any earlier upload); waited for,
    # since the table of a freshly opened page is filled in after the page appears.
    rows_before = len([p for p in APP_CORPUS["path"].iterdir() if p.is_file() and is_supported(p)])
    expect(page.locator("#rag-documents tbody tr")).to_have_count(rows_before)
    bad = tmp_path / "empty-notes.md"
    bad.write_text("   \n", encoding="utf-8")
    page.locator("#rag-upload input[type=file]").set_input_files(str(bad))
    status = page.locator("#rag-upload-status .rag-error")
    expect(status).to_contain_text("Nothing was added", timeout=ANSWER_TIMEOUT_MS)
    expect(status).to_contain_text("empty")
    expect(page.locator("#rag-documents tbody tr")).to_have_count(rows_before)
    expect(page.locator("#rag-documents")).not_to_contain_text("empty-notes")


def test_markup_in_documents_never_runs(session: Session, tmp_path: Path) -> None:
    page = session.page
    doc = tmp_path / "quartz-valley.md"
    doc.write_text(HOSTILE_MD, encoding="utf-8")
    session.upload(doc)
    session.ask("How many meteors did the Quartz Valley observatory record?")
    expect(page.locator("#rag-chat .rag-answer").last).to_contain_text("913")
    source = page.locator("#rag-sources .rag-source").first
    # The markup is shown as text, in the title and in the passage.
    expect(source.locator(".rag-title")).to_have_text(HOSTILE_TITLE)
    expect(source.locator(".rag-passage")).to_contain_text("<img src=x onerror=alert(1)>")
    expect(source.locator(".rag-passage")).to_contain_text("<script>alert(2)</script>")
    page.get_by_role("tab", name="Documents").click()
    expect(page.locator("#rag-documents")).to_contain_text(HOSTILE_TITLE)
    page.get_by_role("tab", name="Ask").click()
    page.wait_for_timeout(1000)  # give any injected handler a chance to fire
    assert session.dialogs == []
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("#rag-sources script, #rag-chat script, #rag-documents script").count() == 0
    assert page.locator("a[href^='javascript' i]").count() == 0
    assert page.evaluate("() => [...document.querySelectorAll('[onerror]')].length") == 0


# -- ui.py without a browser: a stand-in assistant, gradio's launch captured -------------


def test_cited_document_opens_at_the_quote(session: Session) -> None:
    page = session.page
    session.ask(CHATHAM)
    source = page.locator("#rag-sources .rag-source").first
    quote = source.locator("mark").first.inner_text()
    source.locator(".rag-open-doc").click()
    view = page.locator("#rag-document-view")
    expect(view).to_be_visible(timeout=UI_TIMEOUT_MS)
    mark = view.locator(".rag-document mark")
    expect(mark).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(mark).to_contain_text("Chatham House")
    assert " ".join(mark.inner_text().split()) in " ".join(quote.split()) or \
        " ".join(quote.split()) in " ".join(mark.inner_text().split())
    expect(mark).to_be_in_viewport()
    expect(view.locator(".rag-page-marker").first).to_have_text(re.compile(r"page 1", re.IGNORECASE))
    expect(view.locator(".rag-title")).to_contain_text("Force Development")
    # The whole document is there, not only the passage.
    assert len(view.locator(".rag-doc-text").first.inner_text()) > 5 * len(quote)

    # The Documents tab opens any document, at its top.
    page.get_by_role("tab", name="Documents").click()
    row = page.locator("#rag-documents tr", has_text="defence-production-op-ed-2025.txt")
    row.locator(".rag-open-doc").click()
    expect(view).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(view.locator(".rag-document")).to_have_attribute("data-source", "defence-production-op-ed-2025.txt",
                                                             timeout=UI_TIMEOUT_MS)
    expect(view.locator(".rag-document mark")).to_have_count(0)
    assert session.dialogs == []


def test_conversation_is_exported_and_restored_after_reindexing(session: Session, tmp_path: Path) -> None:
    """Export as Markdown and JSON downloads; the document is edited (a paragraph inserted before
    the cited sentence) and re-indexed; restoring the JSON shows the citation as moved.  This edits
    the app's copy of the seeds, so it runs after every other browser test of the module."""
    page = session.page
    session.ask("What is NATO's Defence Production Action Plan?")
    page.get_by_text("Save, restore or export the conversation").click()
    page.locator("#rag-export").click()
    files = page.locator("#rag-export-files")
    expect(files.locator("a[href$='/conversation.json']")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(page.locator("#rag-conversation-status")).to_contain_text("Exported 1 turn(s)")
    saved = {}
    for name in ("conversation.md", "conversation.json"):
        with page.expect_download() as info:
            files.locator(f"a[href$='/{name}']").click()
        path = tmp_path / name
        info.value.save_as(path)
        saved[name] = path.read_text(encoding="utf-8")
    assert saved["conversation.md"].startswith("# Conversation")
    assert "## 1. What is NATO's Defence Production Action Plan?" in saved["conversation.md"]
    data = json.loads(saved["conversation.json"])
    cited = data["turns"][0]["citations"][0]
    assert cited["source"] == "defence-production-op-ed-2025.txt" and cited["quote"] in saved["conversation.md"]

    # The cited document gains a paragraph before the quote; adding another file re-indexes the folder.
    doc = APP_CORPUS["path"] / cited["source"]
    text = doc.read_text(encoding="utf-8")
    cut = text.index(cited["quote"])
    cut = text.rfind("\n\n", 0, cut) + 2 if text.rfind("\n\n", 0, cut) >= 0 else 0
    doc.write_text(text[:cut] + "An editor's note added after publication, before the cited passage.\n\n"
                   + text[cut:], encoding="utf-8")
    extra = tmp_path / "harbour-note.txt"
    extra.write_text("Harbour note\n\nThe harbour dredging finished in May 2024 after six months.\n",
                     encoding="utf-8")
    session.upload(extra)
    page.locator("#rag-clear").click()
    expect(page.locator("#rag-chat .rag-question")).to_have_count(0)

    page.locator("#rag-conversation input[type=file]").set_input_files(str(tmp_path / "conversation.json"))
    expect(page.locator("#rag-conversation-status")).to_contain_text("Restored 1 turn(s); 1 citation",
                                                                  timeout=UI_TIMEOUT_MS)
    expect(page.locator("#rag-chat .rag-question")).to_have_text("What is NATO's Defence Production Action Plan?")
    label = page.locator("#rag-sources .rag-citation-status")
    expect(label).to_have_attribute("data-status", "moved")
    expect(label).to_contain_text("the quote was found again")
    # A restored conversation goes on: the follow-up is searched with the restored question.
    session.ask("When was it agreed?")
    expect(page.locator("#rag-chat .rag-answer").last.locator(".rag-searched")).to_contain_text(
        "Defence Production Action Plan")

    # Not a conversation: a clear message, the chat unchanged.
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    page.locator("#rag-conversation input[type=file]").set_input_files(str(bad))
    expect(page.locator("#rag-conversation-status")).to_contain_text("Not restored", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#rag-chat .rag-question")).to_have_count(2)
    assert session.dialogs == []


class _FakeAssistant:
    """What build_ui needs at build time: settings, backend, documents()."""

    def __init__(self, **llm: object) -> None:
        from rag.config import Settings

        self.settings = Settings()
        for key, value in llm.items():
            setattr(self.settings.llm, key, value)
        self.backend = "extractive"

    def documents(self) -> list[dict[str, object]]:
        return [{"source": "a.txt", "title": "<b>A</b>", "pages": 1, "chunks": 2}]


def test_openai_is_offered_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.ui import backend_choices

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert [n for _, n in backend_choices(_FakeAssistant())] == ["extractive", "llama-cpp"]
    assert "openai" in [n for _, n in backend_choices(_FakeAssistant(openai_base_url="http://localhost:8080/v1"))]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert "openai" in [n for _, n in backend_choices(_FakeAssistant())]


def test_serve_honours_gradio_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    from rag import ui

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: calls.append(kw))
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    ui.serve(_FakeAssistant())  # type: ignore[arg-type]
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    ui.serve(_FakeAssistant())  # type: ignore[arg-type]
    ui.serve(_FakeAssistant(), host="127.0.0.2", port=8001)  # type: ignore[arg-type]
    assert [(c["server_name"], c["server_port"]) for c in calls] == [
        ("127.0.0.1", 7860), ("0.0.0.0", 7999), ("127.0.0.2", 8001)]
    assert all(c["css"] and c["theme"] is not None for c in calls)
