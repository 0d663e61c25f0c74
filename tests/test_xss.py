"""Markup in documents, file names, titles, model output and error text never becomes executable.

Fast: hostile documents are indexed and answered through :class:`rag.assistant.Assistant`
with fake generators (hostile output, verbatim hostile quotes with the guard off,
unsupported output that abstains, a failure whose message is hostile); every piece
of HTML the UI would show (streamed partials, answer, sources, sources panel,
documents table, question, errors) is parsed with :mod:`html.parser` and must hold
no script/img/iframe/svg/object/embed element, no ``on*`` attribute and no
``javascript:`` URL, while the payload stays visible as text.

Slow: the real app in a browser; a hostile document is uploaded and asked about with
the extractive backend and with an OpenAI-compatible fake server that streams hostile
markup.  Every payload, if it ever ran, would raise a dialog or bump ``window.__xss``:
the number of executions must be 0.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rag import render
from rag.assistant import Assistant
from rag.config import Settings
from rag.errors import GenerationError
from rag.generators import GenerationRequest
from rag.indexing import index_folder
from rag.types import Answer

from reliability_helpers import AppProcess, FakeLLMServer

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
JS_LINK = "[click](javascript:alert(1))"
EXTRA = [
    '<iframe src="javascript:alert(1)"></iframe>',
    "<svg onload=alert(1)>",
    '"><a href="javascript:alert(1)">x</a>',
    "![pixel](javascript:alert(1))",
    "<a href=&#106;avascript:alert(1)>y</a>",
]
PAYLOADS = [SCRIPT, IMG, JS_LINK, *EXTRA]

FACT = "The Quartz Valley observatory recorded 913 meteors during the August survey night."
HOSTILE_SENTENCE = f"The survey log shows the markup {SCRIPT} and {IMG} next to {JS_LINK} in the margin."
HOSTILE_MD = f"""# Quartz Valley {IMG} Bulletin {SCRIPT}

{FACT}
{HOSTILE_SENTENCE}
The night log also contains {EXTRA[0]} and {EXTRA[1]} and {EXTRA[2]}.
A footnote reads {EXTRA[3]} and {EXTRA[4]} for reference.
The observatory director is Imelda Vance.
"""
HOSTILE_HTML = """<html><head><title>Lantern Bay &lt;script&gt;alert(1)&lt;/script&gt; Report</title></head>
<body><p>The Lantern Bay lighthouse keeper logged 41 storms in the winter season.</p>
<p>The keeper wrote &lt;img src=x onerror=alert(1)&gt; in the margin of the storm log.</p>
<script>alert('in a script tag')</script><img src=x onerror=alert(2)></body></html>"""
HOSTILE_FILE = f"quartz{IMG}.md"
QUESTION = "How many meteors did the Quartz Valley observatory record during the August survey night?"

FORBIDDEN_TAGS = {"script", "img", "iframe", "svg", "object", "embed", "frame", "base", "form", "input",
                  "video", "audio", "source", "link", "meta", "style", "math"}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def executable(markup: str) -> list[str]:
    """Every construct of ``markup`` a browser could execute (empty when inert)."""
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    found = []
    for tag, attrs in parser.elements:
        if tag in FORBIDDEN_TAGS:
            found.append(f"<{tag}> element")
        for name, value in attrs.items():
            if name.startswith("on"):
                found.append(f"{name} attribute on <{tag}>")
            url = re.sub(r"[\s\x00-\x1f]+", "", html.unescape(value)).lower()
            if url.startswith(("javascript:", "vbscript:", "data:text/html")):
                found.append(f"{name}={value!r} on <{tag}>")
            if name in ("href", "src", "action", "formaction", "srcdoc") and not re.fullmatch(r"#rag-src-\d+-\d+", value):
                found.append(f"{name}={value!r} on <{tag}>")
    if re.search(r"\]\s*\(", markup):  # a Markdown link or image a Markdown-rendering widget would build
        found.append("markdown link syntax")
    return found


def visible_text(markup: str) -> str:
    parser = _Elements()
    parser.feed(markup)
    parser.close()
    return "".join(parser.text)


class FakeGenerator:
    """A stand-in model: yields ``text`` in pieces, or raises ``error``."""

    def __init__(self, text: str = "", error: Exception | None = None, name: str = "fake") -> None:
        self.name = name
        self.text = text
        self.error = error
        self.requests: list[GenerationRequest] = []

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        for i in range(0, len(self.text), 7):
            yield self.text[i:i + 7]


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    base = tmp_path_factory.mktemp("xss")
    corpus = base / "docs"
    corpus.mkdir()
    (corpus / HOSTILE_FILE).write_text(HOSTILE_MD, encoding="utf-8")
    (corpus / "lantern-bay.html").write_text(HOSTILE_HTML, encoding="utf-8")
    report = index_folder(corpus, base / "index", embedder, show_progress=False)
    assert sorted(report.added) == sorted([HOSTILE_FILE, "lantern-bay.html"])
    return base / "index"


def _views(answer: Answer, partials: list[str]) -> dict[str, str]:
    """Every piece of HTML the chat UI builds for this answer (see rag/ui.py respond)."""
    sources = render.sources_html(answer, turn=0)
    return {
        **{f"partial {i}": render.partial_html(p) for i, p in enumerate(partials)},
        "question": render.question_html(answer.question),
        "answer": render.answer_html(answer, turn=0),
        "sources": sources,
        "panel": render.sources_panel_html([(answer.question, sources), (f"{SCRIPT}?", sources)]),
    }


def _run(assistant: Assistant, question: str = QUESTION) -> tuple[Answer, list[str]]:
    partials, streamed = [], ""
    answer = None
    for item in assistant.stream(question):
        if isinstance(item, Answer):
            answer = item
        else:
            streamed += item
            partials.append(streamed)
    assert answer is not None
    return answer, partials


def _assert_inert(views: dict[str, str]) -> None:
    found = {name: executable(markup) for name, markup in views.items()}
    assert {k: v for k, v in found.items() if v} == {}
    executions = sum(len(v) for v in found.values())
    assert executions == 0


HOSTILE_OUTPUT = (f"{FACT} [1] Here is markup: {SCRIPT} {IMG} {JS_LINK} [2] "
                  + " ".join(EXTRA) + " [1] <b>bold</b> [99]")


def test_hostile_model_output_is_inert_while_streaming_and_after(hostile_index: Path, embedder) -> None:
    fake = FakeGenerator(HOSTILE_OUTPUT)
    answer, partials = _run(Assistant(hostile_index, fake, embedder=embedder))
    assert fake.requests, "the fake generator was not used"
    assert answer.backend == "fake" and not answer.abstained
    assert "913" in answer.text
    views = _views(answer, partials)
    _assert_inert(views)
    # While streaming, the raw output is on screen: as text, not markup.
    last = visible_text(views[f"partial {len(partials) - 1}"])
    for payload in (SCRIPT, IMG, JS_LINK):
        assert payload in last
    assert HOSTILE_FILE in visible_text(views["sources"])
    assert f"Quartz Valley {IMG} Bulletin {SCRIPT}" in visible_text(views["sources"])


def test_hostile_quote_survives_the_check_with_the_guard_off_and_stays_text(hostile_index: Path, embedder) -> None:
    """Guard off: a verbatim quote holding the payloads is supported, cited and shown as text."""
    fake = FakeGenerator(f"{FACT} [1] {HOSTILE_SENTENCE} [1]")
    settings = Settings(guard_documents=False)
    answer, partials = _run(Assistant(hostile_index, fake, embedder=embedder, settings=settings))
    assert HOSTILE_SENTENCE in answer.text  # the payload reached the final answer ...
    assert any(SCRIPT in c.quote for c in answer.citations)
    views = _views(answer, partials)
    _assert_inert(views)  # ... and is still inert
    assert SCRIPT in visible_text(views["answer"]) and IMG in visible_text(views["answer"])
    assert JS_LINK in visible_text(views["answer"])
    assert SCRIPT in visible_text(views["sources"])


# Regression test: found failing at c1b62b1 (rag/citations.py SupportChecker.support built pair windows over
# the guard-filtered sentence list, so a window spanned a masked sentence: a model sentence repeating the
# masked markup was "supported" (0.79) and cited with the markup inside the quote); fixed in 6f8f30d.
def test_guard_on_never_quotes_the_markup(hostile_index: Path, embedder) -> None:
    fake = FakeGenerator(f"{FACT} [1] {HOSTILE_SENTENCE} [1]")
    answer, partials = _run(Assistant(hostile_index, fake, embedder=embedder))
    assert "913" in answer.text
    assert SCRIPT not in answer.text and IMG not in answer.text
    assert all(SCRIPT not in c.quote and IMG not in c.quote for c in answer.citations)
    _assert_inert(_views(answer, partials))


def test_abstention_with_hostile_passages_and_question(hostile_index: Path, embedder) -> None:
    fake = FakeGenerator(HOSTILE_OUTPUT)
    question = "What do zebras, quokkas, wombats and platypuses eat?"  # nothing in the corpus: abstains
    answer, partials = _run(Assistant(hostile_index, fake, embedder=embedder), question)
    assert answer.abstained and answer.passages and not fake.requests
    answer.question = f"{question} {IMG} {SCRIPT}"
    views = _views(answer, partials)
    _assert_inert(views)
    assert IMG in visible_text(views["question"]) and SCRIPT in visible_text(views["panel"])
    assert SCRIPT in visible_text(views["sources"])  # the related passages show the markup as text


def test_hostile_failure_message_in_the_fallback_notice(hostile_index: Path, embedder) -> None:
    fake = FakeGenerator(error=GenerationError(f"upstream said {SCRIPT} {IMG} {JS_LINK}"))
    answer, partials = _run(Assistant(hostile_index, fake, embedder=embedder))
    assert answer.backend == "extractive" and SCRIPT in answer.notice
    views = _views(answer, partials)
    _assert_inert(views)
    assert SCRIPT in visible_text(views["answer"])


def test_documents_table_and_messages(hostile_index: Path, embedder) -> None:
    docs = Assistant(hostile_index, "extractive", embedder=embedder).documents()
    assert {d["source"] for d in docs} == {HOSTILE_FILE, "lantern-bay.html"}
    assert any("<script>" in str(d["title"]) for d in docs)  # the HTML title's entities decoded to markup
    views = {
        "documents": render.documents_html(docs),
        "error": render.error_html(f"{HOSTILE_FILE}: {SCRIPT}"),
        "status": render.status_html(f"Nothing was added: {IMG}. {JS_LINK}", ok=False),
        "question": render.question_html(" ".join(PAYLOADS)),
    }
    _assert_inert(views)
    assert "<script>" in visible_text(views["documents"])
    assert HOSTILE_FILE in visible_text(views["documents"])


def test_a_title_with_a_blank_line_keeps_the_answer_html_on_one_line(tmp_path: Path, embedder) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "annual.html").write_text(
        "<html><head><title>Annual\n\n  Report</title></head><body>"
        "<p>The Hollin depot stores exactly 4,812 spare propeller blades for the fleet.</p></body></html>",
        encoding="utf-8")
    index_folder(corpus, tmp_path / "index", embedder, show_progress=False)
    answer = Assistant(tmp_path / "index", "extractive", embedder=embedder).ask(
        "How many spare propeller blades does the Hollin depot store?")
    assert answer.citations
    for markup in (render.answer_html(answer), render.sources_html(answer)):
        _assert_inert({"markup": markup})
        assert "\n" not in markup and "\r" not in markup
    assert answer.citations[0].title == "Annual Report"


def test_escaped_text_is_one_line() -> None:
    """A line break in a title, file name or quote never reaches the HTML (a blank line would end
    the HTML block in the Markdown-rendering chat)."""
    for text in ("Annual\n\nReport", "a\r\nb", "a\u2028b", "x\x85y"):
        out = render.esc(text)
        assert not any(c in out for c in "\n\r\u2028\x85"), out
    assert render.esc_lines("one\n\ntwo") == "one<br><br>two"


def test_the_checker_itself_catches_markup() -> None:
    """The detector used above is not vacuous."""
    assert executable(SCRIPT) and executable(IMG) and executable(f"<p>{JS_LINK}</p>")
    assert executable('<a href="JaVaScRiPt&#58;alert(1)">x</a>')
    assert executable('<svg><a xlink:href="x" onclick="y">z</a></svg>')
    assert executable(render.esc(SCRIPT)) == []
    assert executable('<a class="rag-marker" href="#rag-src-0-1">[1]</a>') == []


# -- in the real browser ----------------------------------------------------------------------

COUNTED = "window.__xss=(window.__xss||0)+1"
BROWSER_DOC = f"""# Harrowgate Kiln {IMG} Survey <script>{COUNTED}</script>

The Harrowgate kiln fired 2,760 roof tiles during the spring trial.
The trial log shows <img src=x onerror="{COUNTED}"> and <script>{COUNTED};alert(7)</script> in the margin.
The log also links [the log](javascript:{COUNTED}) and <svg onload="{COUNTED}"></svg> for reference.
The kiln master is Orla Penhale.
"""
BROWSER_QUESTION = "How many roof tiles did the Harrowgate kiln fire during the spring trial?"
MODEL_REPLY = (f"The Harrowgate kiln fired 2,760 roof tiles during the spring trial. [1] "
               f"Markup follows: <img src=x onerror=\"{COUNTED}\"> <script>{COUNTED}</script> [open](javascript:{COUNTED}) "
               f"<iframe src=\"javascript:{COUNTED}\"></iframe> [1]")


@pytest.fixture(scope="module")
def xss_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcess, FakeLLMServer]]:
    base = tmp_path_factory.mktemp("xss-app")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "placeholder.md").write_text("# Placeholder\n\nThe archive holds old maps of the coast.\n",
                                           encoding="utf-8")
    with FakeLLMServer("reply", MODEL_REPLY) as server:
        env = {"RAG_LLM__OPENAI_BASE_URL": server.base_url, "RAG_LLM__TIMEOUT_S": "30"}
        with AppProcess(base, corpus, env) as proc:
            yield proc, server
        assert "Traceback" not in proc.log(), proc.log()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_no_markup_executes_in_the_browser(xss_app: tuple[AppProcess, FakeLLMServer], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    proc, server = xss_app
    doc = tmp_path / f"harrowgate{IMG}.md"
    doc.write_text(BROWSER_DOC, encoding="utf-8")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(proc.url, timeout=60_000)
            box = page.locator("#rag-question textarea")
            expect(box).to_be_visible(timeout=60_000)

            page.get_by_role("tab", name="Documents").click()
            page.locator("#rag-upload input[type=file]").set_input_files(str(doc))
            expect(page.locator("#rag-upload-status")).to_contain_text("Added", timeout=120_000)
            expect(page.locator("#rag-documents")).to_contain_text(f"Harrowgate Kiln {IMG} Survey")
            page.get_by_role("tab", name="Ask").click()

            answers = page.locator("#rag-chat .rag-answer:not(.rag-partial)")
            for n, backend in enumerate(["Extractive", "OpenAI-compatible"], start=1):
                page.locator("#rag-backend input").click()
                page.get_by_role("option", name=re.compile(backend)).click()
                box.fill(BROWSER_QUESTION)
                box.press("Enter")
                expect(answers).to_have_count(n, timeout=120_000)
                expect(page.locator("#rag-chat .rag-partial")).to_have_count(0, timeout=60_000)
                expect(answers.last).to_contain_text("2,760")
            assert server.requests, "the OpenAI-compatible fake was never asked"
            expect(answers.last.locator(".rag-meta")).to_contain_text("openai")
            # The markup is on screen as text.
            expect(page.locator("#rag-sources .rag-passage").first).to_contain_text("<img src=x onerror=")
            page.wait_for_timeout(1500)  # give any injected handler a chance to fire

            executions = len(dialogs) + int(page.evaluate("window.__xss || 0"))
            injected = page.evaluate("""() => ({
                img: document.querySelectorAll('#rag-chat img[src="x"], #rag-sources img, #rag-documents img').length,
                script: document.querySelectorAll('#rag-chat script, #rag-sources script, #rag-documents script').length,
                iframe: document.querySelectorAll('#rag-chat iframe, #rag-sources iframe').length,
                svg: document.querySelectorAll('#rag-chat svg[onload], #rag-sources svg, #rag-documents svg').length,
                handlers: [...document.querySelectorAll('#rag-chat *, #rag-sources *, #rag-documents *')]
                    .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
                js_links: document.querySelectorAll('a[href^="javascript" i]').length,
            })""")
            assert executions == 0, dialogs
            assert injected == {"img": 0, "script": 0, "iframe": 0, "svg": 0, "handlers": 0, "js_links": 0}
            # The counter is live: real injected markup in this page does bump it.
            page.evaluate(f"""() => document.body.insertAdjacentHTML('beforeend',
                '<img id="rag-xss-probe" src="x" onerror="{COUNTED}">')""")
            page.wait_for_function("window.__xss === 1", timeout=10_000)
        finally:
            browser.close()
