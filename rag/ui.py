"""The chat UI: a Gradio app over one :class:`~rag.assistant.Assistant`.

Chat on the left, the cited passages on the right, a Documents tab to see and
add files.  No business logic lives here: handlers call Assistant methods and
render the results with :mod:`rag.render` (which escapes every piece of text).

>>> from rag import Assistant
>>> from rag.ui import serve
>>> serve(Assistant.from_settings())          # http://127.0.0.1:7860
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rag import render
from rag.assistant import Assistant
from rag.conversation import Conversation
from rag.errors import LoaderError, QuestionError, RagError
from rag.loaders import GZIP, SUPPORTED_SUFFIXES
from rag.types import Answer

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

#: Example questions for the default corpus (the two seed reports).
EXAMPLES = [
    "Which rule did the report follow so that no comments are attributed to individuals?",
    "What is NATO's Defence Production Action Plan?",
    "Why does the op-ed say defence production matters more than procurement?",
]

#: Short labels shown for the examples (clicking one asks the full question).
EXAMPLE_LABELS = [
    "Chatham House rule?",
    "NATO's Defence Production Action Plan?",
    "Production vs. procurement?",
]

BACKEND_LABELS = {
    "extractive": "Extractive (quotes, no model)",
    "llama-cpp": "Local model (Gemma 3 270M)",
    "openai": "OpenAI-compatible API",
}

HEADER = """
<div class="rag-header">
  <h1>Cited answers over your reports</h1>
  <p>Every sentence is checked against the documents and cited: click a marker such as
  <span class="rag-marker-demo">&#91;1&#93;</span> to see its passage. No answer in the documents? It says so.</p>
</div>
"""

#: Runs when the sources panel mounts: marker and source clicks bring the passage into view.
SOURCES_JS = r"""
const ragCentre = (root) => {
  root.querySelectorAll('.rag-passage').forEach((box) => {
    const mark = box.querySelector('mark');
    if (!mark) return;
    const line = parseFloat(getComputedStyle(box).lineHeight) || 20;
    const top = Math.max(0, mark.offsetTop - box.clientHeight / 3);
    box.scrollTop = Math.floor(top / line) * line;  // whole lines: no half-cut line at the top
  });
};
if (!window.__ragSourcesInstalled) {
  window.__ragSourcesInstalled = true;
  const reveal = (id) => {
    const entry = id ? document.getElementById(id) : null;
    if (!entry) return;
    for (let d = entry.closest('details'); d; d = d.parentElement && d.parentElement.closest('details')) d.open = true;
    document.querySelectorAll('.rag-source.rag-active').forEach((e) => e.classList.remove('rag-active'));
    entry.classList.add('rag-active');
    entry.focus({ preventScroll: true });
    entry.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    ragCentre(entry);
  };
  document.addEventListener('keydown', (ev) => {
    const target = ev.target instanceof Element ? ev.target.closest('.rag-open-doc') : null;
    if (target && (ev.key === 'Enter' || ev.key === ' ')) { ev.preventDefault(); target.click(); }
  });
  document.addEventListener('click', (ev) => {
    const target = ev.target instanceof Element ? ev.target : null;
    if (!target) return;
    const opener = target.closest('.rag-open-doc');
    if (opener) {
      // Ask the server for the document (a hidden text box carries the request).
      ev.preventDefault();
      ev.stopPropagation();
      const box = document.querySelector('#rag-open-request textarea');
      if (!box) return;
      box.value = JSON.stringify({source: opener.getAttribute('data-source'),
        start: Number(opener.getAttribute('data-start')), end: Number(opener.getAttribute('data-end')),
        at: Date.now()});
      box.dispatchEvent(new Event('input', {bubbles: true}));
      return;
    }
    const marker = target.closest('a.rag-marker');
    if (marker) {
      ev.preventDefault();
      ev.stopPropagation();
      reveal(marker.getAttribute('data-target') || (marker.getAttribute('href') || '').replace(/^#/, ''));
      return;
    }
    const entry = target.closest('.rag-source');
    if (entry) reveal(entry.id);
  }, true);
}
ragCentre(element);
if (typeof watch === 'function') watch('value', () => ragCentre(element));
"""

#: Runs when the document viewer mounts: each new document scrolls to its highlighted quote.
DOCUMENT_JS = r"""
const ragShowQuote = () => {
  const mark = element.querySelector('mark');
  if (mark) mark.scrollIntoView({block: 'center'});
  else element.scrollTop = 0;
};
ragShowQuote();
if (typeof watch === 'function') watch('value', () => setTimeout(ragShowQuote, 50));
"""

COPY_JS = """(text) => {
  if (text && navigator.clipboard) navigator.clipboard.writeText(text);
  return text;
}"""

CSS = """
.gradio-container { max-width: 1500px !important; margin: 0 auto !important; }
.rag-header h1 { font-size: 1.45rem; margin: 0.2rem 0 0.25rem; font-weight: 650; }
.rag-header p { margin: 0 0 0.3rem; color: var(--body-text-color-subdued); font-size: 0.95rem; }
#rag-sources { height: calc(100vh - 375px); min-height: 260px; overflow-y: auto !important;
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 0.6rem 0.8rem; background: var(--background-fill-secondary); }
.rag-answer p, .rag-question { margin: 0.15rem 0; line-height: 1.55; }
.rag-answer .rag-meta, .rag-docs .rag-meta { font-size: 0.78rem; color: var(--body-text-color-subdued); margin-top: 0.35rem; }
.rag-searched { font-size: 0.8rem; color: var(--body-text-color-subdued); margin: 0 0 0.2rem; }
.rag-notice { font-size: 0.85rem; color: var(--body-text-color-subdued); font-style: italic; }
a.rag-marker, .rag-marker-demo { display: inline-block; padding: 0 0.32em; margin: 0 0.08em;
  border-radius: 0.45em; font-size: 0.8em; font-weight: 650; line-height: 1.45; vertical-align: 0.08em;
  text-decoration: none !important; color: var(--color-accent) !important;
  background: var(--color-accent-soft); border: 1px solid var(--color-accent); cursor: pointer; }
a.rag-marker:hover, a.rag-marker:focus { background: var(--color-accent); color: white !important; }
.rag-abstained { border-left: 4px solid #d97706; padding-left: 0.6rem; }
.rag-abstain-label { color: #b45309; }
.rag-error { border-left: 4px solid #dc2626; padding-left: 0.6rem; }
.rag-error strong { color: #dc2626; }
.rag-typing { margin-left: 0.2em; animation: rag-blink 1s steps(2) infinite; }
@keyframes rag-blink { 50% { opacity: 0.2; } }
.rag-panel-question { font-weight: 600; margin: 0 0 0.4rem; }
.rag-sources-title { font-size: 0.8rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); margin: 0.2rem 0 0.4rem; font-weight: 600; }
.rag-count { display: inline-block; min-width: 1.3em; text-align: center; border-radius: 0.6em;
  background: var(--color-accent-soft); color: var(--color-accent); padding: 0 0.3em; }
.rag-source { border: 1px solid var(--border-color-primary); border-radius: var(--radius-md);
  background: var(--background-fill-primary); padding: 0.55rem 0.7rem; margin-bottom: 0.6rem;
  cursor: pointer; transition: box-shadow 0.2s, border-color 0.2s; outline: none; scroll-margin: 0.6rem; }
.rag-source.rag-active { border-color: var(--color-accent); box-shadow: 0 0 0 3px var(--color-accent-soft); }
.rag-source-head { margin-bottom: 0.35rem; line-height: 1.45; }
.rag-source-head > * { margin-right: 0.25rem; }
.rag-title { font-weight: 600; }
.rag-page { font-size: 0.8rem; color: var(--body-text-color-subdued); }
.rag-passage { position: relative; max-height: 12.5em; overflow-y: auto; font-size: 0.88rem; line-height: 1.55;
  color: var(--body-text-color); }
.rag-instruction { text-decoration: line-through dotted #b91c1c; color: #7f1d1d; }
.rag-instruction-label { font-size: 0.75em; text-transform: uppercase; letter-spacing: 0.03em; background: #fee2e2; color: #991b1b; padding: 0 0.3em; border-radius: 0.2em; text-decoration: none; display: inline-block; }
.rag-passage mark, mark.rag-quote { background: #fde68a; color: #1f2937; padding: 0.05em 0.1em; border-radius: 0.2em; }
.rag-file { font-size: 0.72rem; color: var(--body-text-color-subdued); margin-top: 0.3rem; font-family: var(--font-mono); }
.rag-label { font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.04em; color: #b45309;
  border: 1px solid #f59e0b; border-radius: 0.4em; padding: 0 0.35em; }
.rag-earlier-title { margin-top: 1rem; font-size: 0.8rem; color: var(--body-text-color-subdued); font-weight: 600; }
.rag-earlier summary { cursor: pointer; margin: 0.3rem 0; }
.rag-doc-table { width: 100%; border-collapse: collapse; }
.rag-doc-table th, .rag-doc-table td { text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid var(--border-color-primary); }
.rag-doc-table .rag-num { text-align: right; }
.rag-doc-file { font-family: var(--font-mono); font-size: 0.85rem; }
.rag-status { padding: 0.5rem 0.7rem; border-radius: var(--radius-md); }
.rag-status.rag-ok { border-left: 4px solid #16a34a; }
.rag-question, .rag-answer, .rag-error, .rag-passage, .rag-title, .rag-panel-question, .rag-status,
.rag-earlier summary, .rag-doc-table td { overflow-wrap: anywhere; word-break: break-word; }
.rag-doc-table, .rag-doc-table tr, .rag-doc-table th, .rag-doc-table td { border-left: none !important;
  border-right: none !important; border-top: none !important; }
.rag-doc-table thead th { border-bottom: 2px solid var(--border-color-primary) !important; }
footer { display: none !important; }
.rag-hidden { display: none !important; }
#rag-document-view { height: calc(100vh - 260px); min-height: 300px; overflow-y: auto !important;
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); padding: 0.6rem 1rem; }
.rag-doc-text { white-space: pre-wrap; font-size: 0.92rem; line-height: 1.6; }
.rag-page-marker { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); border-top: 1px dashed var(--border-color-primary); padding-top: 0.3rem; }
.rag-open-doc { display: inline-block; margin-top: 0.2rem; font-family: var(--font); font-size: 0.78rem; cursor: pointer;
  color: var(--color-accent); text-decoration: underline; }
"""


def theme() -> gr.themes.Base:
    """A calm theme using local fonts only (nothing is fetched from the internet)."""
    system = ("ui-sans-serif", "system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif")
    mono = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=system, font_mono=mono)


def backend_choices(assistant: Assistant) -> list[tuple[str, str]]:
    """(label, name) of the answer backends offered: OpenAI only when it is configured."""
    llm = assistant.settings.llm
    names = ["extractive", "llama-cpp"]
    if llm.openai_base_url or llm.openai_api_key or os.environ.get("OPENAI_API_KEY"):
        names.append("openai")
    return [(BACKEND_LABELS[n], n) for n in names]


def _new_session() -> dict[str, Any]:
    # answers: this session's conversation (follow-ups are searched with the turns before them).
    return {"messages": [], "turns": [], "answers": []}


def build_ui(assistant: Assistant) -> gr.Blocks:
    """The Gradio app for ``assistant``.  Launch it with :func:`serve` (which adds theme and CSS)."""
    choices = backend_choices(assistant)
    default_backend = assistant.backend if assistant.backend in {n for _, n in choices} else "extractive"
    max_k = max(20, assistant.settings.retrieval.k)

    def respond(question: str, session: dict[str, Any], backend: str, k: float) -> Iterator[tuple[Any, ...]]:
        messages = list(session["messages"])
        turns = list(session["turns"])
        conversation = assistant.conversation()
        conversation.turns = list(session.get("answers", []))
        question = question or ""
        messages.append({"role": "user", "content": render.question_html(question)})
        messages.append({"role": "assistant", "content": render.partial_html("")})

        def out(copy: Any = gr.skip()) -> tuple[Any, ...]:
            new = {"messages": messages, "turns": turns, "answers": conversation.turns}
            return "", messages, render.sources_panel_html(turns), copy, new

        yield out()
        streamed: list[str] = []
        answer: Answer | None = None
        try:
            for item in conversation.stream(question, k=int(k), backend=backend):
                if isinstance(item, Answer):
                    answer = item
                else:
                    streamed.append(item)
                    messages[-1] = {"role": "assistant", "content": render.partial_html("".join(streamed))}
                    yield out()
        except QuestionError as exc:
            messages[-1] = {"role": "assistant", "content": render.error_html(str(exc), "Please rephrase")}
            yield out()
            return
        except RagError as exc:
            log.warning("could not answer %r: %s", question[:200], exc)
            messages[-1] = {"role": "assistant", "content": render.error_html(str(exc))}
            yield out()
            return
        except Exception:  # never show a traceback in the chat
            log.exception("unexpected error while answering %r", question[:200])
            messages[-1] = {"role": "assistant", "content": render.error_html(
                "An unexpected error occurred while answering; the details are in the server log.")}
            yield out()
            return
        if answer is None:
            messages[-1] = {"role": "assistant", "content": render.error_html("No answer was produced.")}
            yield out()
            return
        turn = len(turns)
        messages[-1] = {"role": "assistant", "content": render.answer_html(answer, turn=turn)}
        turns.append((answer.question, render.sources_html(answer, turn=turn)))
        yield out(render.answer_markdown(answer))

    def clear() -> tuple[Any, ...]:
        return "", [], render.sources_panel_html([]), "", _new_session()

    def export(session: dict[str, Any]) -> tuple[Any, ...]:
        conversation = Conversation(assistant, session.get("answers", []))
        if not conversation.turns:
            return None, render.status_html("Nothing to export yet: ask a question first.", ok=False)
        folder = Path(tempfile.mkdtemp(prefix="rag-conversation-"))
        markdown = folder / "conversation.md"
        markdown.write_text(conversation.to_markdown(), encoding="utf-8")
        saved = conversation.save(folder / "conversation.json")
        return [str(markdown), str(saved)], render.status_html(
            f"Exported {len(conversation.turns)} turn(s): Markdown to read, JSON to restore later.")

    def restore(path: str | None, session: dict[str, Any]) -> tuple[Any, ...]:
        if not path:
            return (gr.skip(),) * 5 + (render.status_html("No file was given.", ok=False),)
        try:
            conversation = assistant.load_conversation(path)
        except RagError as exc:
            return (gr.skip(),) * 5 + (render.status_html(f"Not restored: {exc}", ok=False),)
        messages, turns = render.conversation_messages(conversation.turns)
        moved = [c.status for a in conversation.turns for c in a.citations if c.status != "current"]
        note = (f"Restored {len(turns)} turn(s); {len(moved)} citation(s) no longer where they were "
                "(see the labels under Sources)." if moved else f"Restored {len(turns)} turn(s).")
        last = conversation.turns[-1] if conversation.turns else None
        return ("", messages, render.sources_panel_html(turns), render.answer_markdown(last) if last else "",
                {"messages": messages, "turns": turns, "answers": conversation.turns}, render.status_html(note))

    def open_document(request: str) -> tuple[Any, ...]:
        try:
            wanted = json.loads(request or "{}")
            source, start, end = str(wanted["source"]), int(wanted["start"]), int(wanted["end"])
        except (ValueError, KeyError, TypeError):
            return gr.skip(), gr.skip()
        document = assistant.indexed_document(source)
        if document is None:
            return render.status_html(f"{source} is no longer in the index.", ok=False), gr.Tabs(selected="document")
        quote = (start, end) if 0 <= start < end <= len(document.text) else None
        html = render.document_html(document.title or source, source, document.text, document.page_spans, quote)
        return html, gr.Tabs(selected="document")

    def list_documents() -> str:
        return render.documents_html(assistant.documents())

    def add_documents(files: list[str] | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        if not files:
            return list_documents(), "", None
        paths = [str(f) for f in files]
        names = [Path(p).name for p in paths]
        progress(0.2, desc=f"Checking and indexing {len(paths)} file(s)")
        try:
            report = assistant.add_files(paths, names=names)
        except (LoaderError, ValueError, OSError) as exc:
            message = f"Nothing was added: {exc}. The index is unchanged."
            return list_documents(), render.status_html(message, ok=False), None
        except RagError as exc:
            log.warning("upload failed: %s", exc)
            return list_documents(), render.status_html(f"Indexing failed: {exc}", ok=False), None
        progress(1.0, desc="Done")
        added = report.added + report.updated
        message = (f"Added {', '.join(added)}: the index now holds {report.chunks} chunks."
                   if added else f"{', '.join(names)}: already in the index, nothing changed.")
        return list_documents(), render.status_html(message), None

    with gr.Blocks(title="rag · cited answers", analytics_enabled=False, fill_width=True) as demo:
        session = gr.State(_new_session())
        gr.HTML(HEADER)
        with gr.Tabs() as tabs:
            with gr.Tab("Ask", id="ask"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=420):
                        chatbot = gr.Chatbot(
                            label="Conversation", show_label=False, elem_id="rag-chat",
                            height="calc(100vh - 330px)", min_height=300, buttons=[], latex_delimiters=[],
                            sanitize_html=True, render_markdown=True, line_breaks=False, feedback_options=None,
                            allow_tags=False,
                            placeholder="Ask about the indexed reports, or pick an example below. "
                                        "Answers cite the passages they come from.",
                        )
                        with gr.Row(equal_height=True):
                            question = gr.Textbox(
                                placeholder="Ask a question about the documents and press Enter",
                                show_label=False, lines=1, max_lines=4, scale=8, autofocus=True,
                                elem_id="rag-question", container=False,
                            )
                            ask = gr.Button("Ask", variant="primary", scale=1, min_width=90, elem_id="rag-ask")
                        examples = gr.Examples(EXAMPLES, inputs=[question], label="Examples",
                                               example_labels=EXAMPLE_LABELS, elem_id="rag-examples")
                    with gr.Column(scale=2, min_width=360):
                        sources = gr.HTML(render.sources_panel_html([]), elem_id="rag-sources",
                                          js_on_load=SOURCES_JS, apply_default_css=True)
                        with gr.Row(equal_height=True, elem_id="rag-controls"):
                            backend = gr.Dropdown(choices, value=default_backend, label="Answer backend",
                                                  scale=3, min_width=180, elem_id="rag-backend")
                            k = gr.Slider(1, max_k, value=assistant.settings.retrieval.k, step=1,
                                          label="Top-k", scale=2, min_width=140, elem_id="rag-k")
                        with gr.Row(equal_height=True):
                            copy = gr.Button("Copy answer with sources", size="sm", elem_id="rag-copy-button")
                            new = gr.Button("New conversation", size="sm", elem_id="rag-clear")
                        with gr.Accordion("Answer with sources (Markdown)", open=False):
                            copy_box = gr.Textbox(show_label=False, lines=6, max_lines=16, interactive=False,
                                                  buttons=["copy"], elem_id="rag-copy")
                        with gr.Accordion("Save, restore or export the conversation", open=False,
                                          elem_id="rag-conversation"):
                            with gr.Row(equal_height=True):
                                export_button = gr.Button("Export (Markdown and JSON)", size="sm",
                                                          elem_id="rag-export")
                                restore_button = gr.UploadButton("Restore a saved conversation (JSON)",
                                                                 file_types=[".json"], type="filepath",
                                                                 size="sm", elem_id="rag-restore")
                            export_files = gr.File(label="Conversation files", file_count="multiple",
                                                   interactive=False, elem_id="rag-export-files")
                            conversation_status = gr.HTML("", elem_id="rag-conversation-status")
            with gr.Tab("Documents", id="documents") as documents_tab:
                documents = gr.HTML(list_documents(), elem_id="rag-documents")
                upload = gr.File(
                    file_count="multiple", file_types=[*SUPPORTED_SUFFIXES, GZIP], type="filepath",
                    label=f"Add documents ({', '.join(SUPPORTED_SUFFIXES)}; also {GZIP})", elem_id="rag-upload", height=140,
                )
                status = gr.HTML("", elem_id="rag-upload-status")
            with gr.Tab("Document", id="document"):
                document_view = gr.HTML(render.status_html("Click 'open the document at this quote' under a "
                                                           "source, or 'open' in the Documents tab."),
                                        elem_id="rag-document-view", js_on_load=DOCUMENT_JS)
        open_request = gr.Textbox(elem_id="rag-open-request", elem_classes=["rag-hidden"], show_label=False,
                                  container=False)

        answer_io = dict(inputs=[question, session, backend, k],
                         outputs=[question, chatbot, sources, copy_box, session], show_progress="hidden")
        question.submit(respond, **answer_io)
        ask.click(respond, **answer_io)
        examples.load_input_event.then(respond, **answer_io)
        reset = dict(outputs=[question, chatbot, sources, copy_box, session], show_progress="hidden")
        new.click(clear, **reset)
        chatbot.clear(clear, **reset)
        copy.click(None, inputs=[copy_box], outputs=[copy_box], js=COPY_JS)
        export_button.click(export, inputs=[session], outputs=[export_files, conversation_status])
        restore_button.upload(restore, inputs=[restore_button, session],
                              outputs=[question, chatbot, sources, copy_box, session, conversation_status])
        open_request.change(open_document, inputs=[open_request], outputs=[document_view, tabs],
                           show_progress="hidden")
        upload.upload(add_documents, inputs=[upload], outputs=[documents, status, upload])
        documents_tab.select(list_documents, outputs=[documents], show_progress="hidden")
        demo.load(list_documents, outputs=[documents], show_progress="hidden")
    return demo


def serve(assistant: Assistant, host: str | None = None, port: int | None = None, **launch: Any) -> None:
    """Serve the UI; ``host``/``port`` default to GRADIO_SERVER_NAME/GRADIO_SERVER_PORT, then 127.0.0.1:7860."""
    host = host or os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST
    port = int(port or os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    demo = build_ui(assistant)
    # Several sessions are answered at once; the local model serialises its own generations.
    demo.queue(default_concurrency_limit=4)
    options: dict[str, Any] = dict(server_name=host, server_port=port, theme=theme(), css=CSS,
                                   show_error=False, ssr_mode=False, mcp_server=False, footer_links=[])
    options.update(launch)
    demo.launch(**options)
