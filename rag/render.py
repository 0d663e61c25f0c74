"""HTML and Markdown views of answers, sources and documents, for the chat UI.

Pure functions, no UI framework.  Every piece of document text, model output,
question, file name and error message is escaped here: it can never render as
markup.  Escaping goes beyond :func:`html.escape`: characters that mean
something to Markdown, LaTeX or template engines are written as numeric
character references too, so text stays text even when the HTML is shown by a
Markdown-rendering chat widget.  The only links produced are in-page anchors
(``#rag-src-<turn>-<n>``) built from integers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from rag.anchoring import STATUS_TEXT
from rag.guard import instruction_spans
from rag.prompts import MARKER
from rag.types import Answer, Citation, Hit

#: Characters written as character references: HTML specials plus Markdown,
#: LaTeX and template syntax (``[x](y)``, ``*``, ``_``, ``$$``, ``${}``, ``{{}}``...).
_ESCAPES = {ord(c): f"&#{ord(c)};" for c in "[]()*_`#!\\~|${}:"}
_ESCAPES.update({ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;",
                 ord('"'): "&quot;", ord("'"): "&#x27;"})
# A line break inside HTML shown by a Markdown widget can end the HTML block (a blank line
# does): escaped text is one line; :func:`esc_lines` keeps breaks as ``<br>``.
_ESCAPES.update({ord(c): " " for c in "\r\n\v\f\x85\u2028\u2029"})

#: Longest question echoed back in the chat, in characters.
MAX_QUESTION_SHOWN = 600


def esc(text: object) -> str:
    """``text`` as inert HTML: no tags, no entities, no Markdown or template syntax."""
    return str(text).translate(_ESCAPES)


def esc_lines(text: object) -> str:
    """Like :func:`esc`, with line breaks kept as ``<br>`` (the result holds no newline)."""
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<br>".join(esc(line) for line in lines)


def source_id(turn: int, marker: int) -> str:
    """The element id of citation ``marker``'s source entry in answer ``turn``."""
    return f"rag-src-{int(turn)}-{int(marker)}"


def related_id(turn: int, rank: int) -> str:
    """The element id of related passage ``rank`` of an abstained answer ``turn``."""
    return f"rag-rel-{int(turn)}-{int(rank)}"


def _marker_link(turn: int, citation: Citation) -> str:
    target = source_id(turn, citation.marker)
    label = esc(f"Source {citation.marker}: {citation.title}, page {citation.page}")
    return (f'<a class="rag-marker" href="#{target}" data-target="{target}" '
            f'title="{label}" aria-label="{label}">&#91;{int(citation.marker)}&#93;</a>')


def _linked_text(text: str, turn: int, citations: Sequence[Citation]) -> str:
    """``text`` escaped, with each known marker ``[n]`` (or ``[n, m]``) as an anchor.

    Brackets inside a quoted passage sentence ("… the grid survey [3].") are the document's
    own reference numbers, shown as text."""
    by_marker = {c.marker: c for c in citations}
    quoted = [(i, i + len(c.quote)) for c in citations if c.quote and MARKER.search(c.quote)
              for i in _occurrences(text, c.quote)]
    out: list[str] = []
    pos = 0
    for m in MARKER.finditer(text):
        if any(a <= m.start() and m.end() <= b for a, b in quoted):
            continue
        out.append(esc_lines(text[pos:m.start()]))
        numbers = [int(n) for n in re.findall(r"\d+", m.group(1))]
        if all(n in by_marker for n in numbers):
            out.append("".join(_marker_link(turn, by_marker[n]) for n in numbers))
        else:
            out.append(esc(m.group(0)))
        pos = m.end()
    out.append(esc_lines(text[pos:]))
    return "".join(out)


def _occurrences(text: str, part: str) -> list[int]:
    found, at = [], text.find(part)
    while at >= 0:
        found.append(at)
        at = text.find(part, at + 1)
    return found


def _timing(answer: Answer) -> str:
    total = answer.timings.get("total_s")
    if not isinstance(total, (int, float)):
        return ""
    return f" · {total:.1f} s" if total >= 0.1 else " · <0.1 s"


def answer_html(answer: Answer, *, turn: int = 0) -> str:
    """The answer as one line of HTML, its markers linked to the source entries.

    An abstention is labelled as such and carries the notice saying why.
    """
    if answer.abstained:
        parts = [
            '<div class="rag-answer rag-abstained" role="status">',
            '<p class="rag-abstain-label"><strong>Not answered</strong> (the assistant abstained)</p>',
            _searched(answer),
            f'<p class="rag-answer-text">{esc_lines(answer.text)}</p>',
        ]
        if answer.notice:
            parts.append(f'<p class="rag-notice">{esc_lines(answer.notice)}</p>')
        if answer.passages:
            parts.append('<p class="rag-hint">The closest passages are listed under Sources as '
                         '&#8220;related, not cited&#8221;.</p>')
        parts.append(f'<p class="rag-meta">{esc(answer.backend)}{esc(_timing(answer))}</p></div>')
        return "".join(parts)
    n = len(answer.citations)
    parts = [
        '<div class="rag-answer">',
        _searched(answer),
        f'<p class="rag-answer-text">{_linked_text(answer.text, turn, answer.citations)}</p>',
    ]
    if answer.notice:
        parts.append(f'<p class="rag-notice">{esc_lines(answer.notice)}</p>')
    meta = f"{answer.backend} · {n} source{'s' if n != 1 else ''}{_timing(answer)}"
    parts.append(f'<p class="rag-meta">{esc(meta)}</p></div>')
    return "".join(parts)


def _searched(answer: Answer) -> str:
    """"Searched for: …" when a follow-up was searched as a rewritten question, else ''."""
    if answer.searched == answer.question:
        return ""
    return f'<p class="rag-searched">Searched for: {esc(answer.searched)}</p>'


def conversation_messages(answers: Sequence[Answer]) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """The chat messages and sources-panel turns that show ``answers`` (a restored conversation)."""
    messages: list[dict[str, str]] = []
    turns: list[tuple[str, str]] = []
    for n, a in enumerate(answers):
        messages += [{"role": "user", "content": question_html(a.question)},
                     {"role": "assistant", "content": answer_html(a, turn=n)}]
        turns.append((a.question, sources_html(a, turn=n)))
    return messages, turns


def partial_html(text: str) -> str:
    """Text streamed so far, escaped, with a typing indicator."""
    body = esc_lines(text.strip()) if text.strip() else "Searching the documents"
    return (f'<div class="rag-answer rag-partial"><p class="rag-answer-text">{body}'
            '<span class="rag-typing" aria-label="writing">&#8230;</span></p></div>')


def question_html(question: str) -> str:
    """The user's question, escaped (very long questions are shortened for display)."""
    q = str(question)
    if len(q) > MAX_QUESTION_SHOWN:
        q = q[:MAX_QUESTION_SHOWN].rstrip() + f"… ({len(question):,} characters)"
    return f'<div class="rag-question">{esc_lines(q) if q.strip() else "<em>(empty question)</em>"}</div>'


def error_html(message: str, title: str = "Could not answer") -> str:
    """An error shown in the chat: a short title and the (escaped) message."""
    message = str(message).strip()
    message = message[:1].upper() + message[1:]
    return (f'<div class="rag-error" role="alert"><p><strong>{esc(title)}</strong></p>'
            f'<p>{esc_lines(message)}</p></div>')


def _passage_for(citation: Citation, passages: Iterable[Hit]) -> Hit | None:
    for hit in passages:
        if hit.chunk.id == citation.chunk_id:
            return hit
    return None


def highlight_span(citation: Citation, chunk_text: str, chunk_start: int) -> tuple[int, int] | None:
    """Where ``citation.quote`` lies in a chunk's text, from the citation's offsets.

    Falls back to searching for the quote when the offsets fall outside the chunk.
    """
    start, end = citation.char_start - chunk_start, citation.char_end - chunk_start
    if 0 <= start < end <= len(chunk_text):
        return start, end
    if citation.quote:
        found = chunk_text.find(citation.quote)
        if found >= 0:
            return found, found + len(citation.quote)
    return None


def _highlighted(citations: Sequence[Citation], hit: Hit | None) -> str:
    """The passage of ``hit`` with every citation's quote in ``<mark>``."""
    if hit is None:
        return "<br>".join(f'<mark class="rag-quote">{esc_lines(c.quote)}</mark>' for c in citations)
    text = hit.chunk.text
    spans: list[tuple[int, int]] = []
    unplaced: list[Citation] = []
    for c in citations:
        span = highlight_span(c, text, hit.chunk.char_start) if c.chunk_id == hit.chunk.id else None
        if span is None:
            unplaced.append(c)
        else:
            spans.append(span)
    out = [passage_html(text, spans)]
    for c in unplaced:
        out.append(f'<br><span class="rag-quote-label">Quoted:</span> <mark class="rag-quote">{esc_lines(c.quote)}</mark>')
    return "".join(out)


#: Shown before a sentence the document guard reads as an instruction to a model: it is
#: still shown (nothing is hidden from the reader), but never quoted or followed.
INSTRUCTION_LABEL = "instruction-like text"


def passage_html(text: str, quotes: Sequence[tuple[int, int]] = ()) -> str:
    """A passage, escaped, with the ``quotes`` spans in ``<mark>`` and every instruction-like
    sentence (:func:`rag.guard.instruction_spans`) in a labelled ``rag-instruction`` span."""
    marked: list[list[int]] = []
    for s, e in sorted(quotes):
        if marked and s <= marked[-1][1]:
            marked[-1][1] = max(marked[-1][1], e)
        else:
            marked.append([s, e])
    flagged = instruction_spans(text)
    cuts = sorted({0, len(text), *(p for span in marked for p in span), *(p for span in flagged for p in span)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        piece = esc_lines(text[a:b])
        if any(s <= a and b <= e for s, e in marked):
            piece = f'<mark class="rag-quote">{piece}</mark>'
        if any(s <= a and b <= e for s, e in flagged):
            label = (f'<span class="rag-instruction-label">{INSTRUCTION_LABEL}</span> '
                     if any(s == a for s, _ in flagged) else "")
            piece = (f'<span class="rag-instruction" title="read as an instruction to a model: '
                     f'shown, never quoted or followed">{label}{piece}</span>')
        out.append(piece)
    return "".join(out)


def _by_marker(citations: Sequence[Citation]) -> list[list[Citation]]:
    """Citations grouped by marker (one passage may support several sentences), in marker order."""
    groups: dict[int, list[Citation]] = {}
    for c in citations:
        groups.setdefault(c.marker, []).append(c)
    return [groups[m] for m in sorted(groups)]


def _pages(citations: Sequence[Citation]) -> str:
    pages = sorted({c.page for c in citations})
    return f"page {pages[0]}" if len(pages) == 1 else "pages " + ", ".join(str(p) for p in pages)


def _page_label(first: int, last: int | None = None) -> str:
    return f"page {first}" if last is None or last == first else f"pages {first}–{last}"


def sources_html(answer: Answer, *, turn: int = 0) -> str:
    """One entry per marker: title, page, the cited passage with each quote in ``<mark>``.

    A marker stands for one passage; when it supports several sentences, each of
    their quotes is highlighted in the same entry.

    On abstention, the closest passages instead, each labelled "related, not cited".
    """
    if answer.abstained or not answer.citations:
        if not answer.passages:
            return ('<div class="rag-sources rag-sources-empty"><p>No passages matched this question.</p>'
                    '</div>')
        parts = ['<div class="rag-sources rag-related">',
                 '<p class="rag-sources-title">Related passages <span class="rag-label">not cited</span></p>']
        for hit in answer.passages:
            c = hit.chunk
            rid = related_id(turn, hit.rank)
            parts.append(
                f'<div class="rag-source rag-source-related" id="{rid}" tabindex="-1">'
                f'<div class="rag-source-head"><span class="rag-label">related, not cited</span> '
                f'<span class="rag-title">{esc(c.title)}</span> '
                f'<span class="rag-page">{esc(_page_label(c.page_start, c.page_end))}</span></div>'
                f'<div class="rag-passage">{passage_html(c.text)}</div>'
                f'<div class="rag-file">{esc(c.source)}</div></div>'
            )
        parts.append("</div>")
        return "".join(parts)
    groups = _by_marker(answer.citations)
    parts = ['<div class="rag-sources">',
             f'<p class="rag-sources-title">Sources <span class="rag-count">{len(groups)}</span></p>']
    for group in groups:
        first = group[0]
        hit = _passage_for(first, answer.passages)
        sid = source_id(turn, first.marker)
        status = next((c.status for c in group if c.status != "current"), "")
        label = (f'<span class="rag-label rag-citation-status" data-status="{esc(status)}">'
                 f'{esc(STATUS_TEXT[status])}</span>') if status in STATUS_TEXT and STATUS_TEXT[status] else ""
        parts.append(
            f'<div class="rag-source" id="{sid}" tabindex="-1" data-marker="{int(first.marker)}">'
            f'<div class="rag-source-head">{_marker_link(turn, first)} '
            f'<span class="rag-title">{esc(first.title)}</span> '
            f'<span class="rag-page">{esc(_pages(group))}</span>{label}</div>'
            f'<div class="rag-passage">{_highlighted(group, hit)}</div>'
            f'<div class="rag-file">{esc(first.source)}</div>{"" if status == "removed" else open_link(first)}</div>'
        )
    parts.append("</div>")
    return "".join(parts)


def open_link(citation: Citation | None = None, source: str = "") -> str:
    """A link that opens a document in the Document tab: at ``citation``'s quote, or at its top."""
    if citation is not None:
        return (f'<span class="rag-open-doc" role="button" tabindex="0" data-source="{esc(citation.source)}" '
                f'data-start="{int(citation.char_start)}" data-end="{int(citation.char_end)}">'
                f'open the document at this quote</span>')
    return (f'<span class="rag-open-doc" role="button" tabindex="0" data-source="{esc(source)}" '
            f'data-start="0" data-end="0">open</span>')


def document_html(title: str, source: str, text: str, page_spans: Sequence[Sequence[int]],
                  quote: tuple[int, int] | None = None) -> str:
    """A whole document, escaped, page by page (each page headed by its number), with the
    characters ``quote`` in ``<mark>`` (the viewer scrolls to the first mark)."""
    pages = [tuple(int(v) for v in p) for p in page_spans] or [(1, 0, len(text))]
    parts = [f'<div class="rag-document" data-source="{esc(source)}">',
             f'<p class="rag-document-title"><span class="rag-title">{esc(title)}</span> '
             f'<span class="rag-file">{esc(source)}</span></p>']
    for page, start, end in pages:
        spans = [(max(quote[0], start) - start, min(quote[1], end) - start)] if (
            quote and quote[0] < end and start < quote[1] and quote[0] < quote[1]) else []
        parts.append(f'<section class="rag-doc-page" data-page="{page}">'
                     f'<p class="rag-page-marker">page {page}</p>'
                     f'<div class="rag-doc-text">{passage_html(text[start:end], spans)}</div></section>')
    parts.append("</div>")
    return "".join(parts)


def sources_panel_html(turns: Sequence[tuple[str, str]]) -> str:
    """The sources panel: the latest answer's sources, earlier ones folded away.

    ``turns`` holds ``(question, sources_html(...))`` pairs, oldest first; the
    sources HTML must come from :func:`sources_html` (it is inserted as is).
    """
    if not turns:
        return ('<div class="rag-sources rag-sources-empty"><p class="rag-sources-title">Sources</p>'
                '<p>Ask a question: the passages that support the answer appear here, '
                'with the quoted words highlighted. Click a marker such as '
                '<span class="rag-marker-demo">&#91;1&#93;</span> to jump to its source.</p></div>')
    question, latest = turns[-1]
    parts = [f'<div class="rag-panel"><p class="rag-panel-question">{esc(_short(question, 200))}</p>{latest}']
    earlier = list(turns[:-1])
    if earlier:
        parts.append('<p class="rag-earlier-title">Earlier questions</p>')
        for q, html_ in reversed(earlier):
            parts.append(f'<details class="rag-earlier"><summary>{esc(_short(q, 120))}</summary>{html_}</details>')
    parts.append("</div>")
    return "".join(parts)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def answer_markdown(answer: Answer) -> str:
    """Plain Markdown to copy: the answer, then ``[n] title, page N, “quote”`` per source.

    A marker that supports several sentences lists its quotes joined by `` … ``."""
    lines = [answer.text.strip()]
    if answer.notice:
        lines += ["", f"_{answer.notice}_" if answer.abstained else f"Note: {answer.notice}"]
    if answer.citations:
        lines += ["", "Sources:"]
        for group in _by_marker(answer.citations):
            quotes = " … ".join(f"“{' '.join(c.quote.split())}”" for c in group)
            lines.append(f"[{group[0].marker}] {group[0].title}, {_pages(group)}, {quotes}")
    elif answer.passages:
        lines += ["", "Related passages (not cited):"]
        for hit in answer.passages:
            lines.append(f"- {hit.chunk.title}, {_page_label(hit.chunk.page_start, hit.chunk.page_end)}")
    return "\n".join(lines) + "\n"


def documents_html(documents: Sequence[Mapping[str, object]]) -> str:
    """The indexed documents as a table: title, file, pages, chunks."""
    if not documents:
        return '<div class="rag-docs"><p>No documents are indexed yet. Upload some below.</p></div>'
    rows = "".join(
        f'<tr><td class="rag-doc-title">{esc(d.get("title", ""))}</td>'
        f'<td class="rag-doc-file">{esc(d.get("source", ""))}</td>'
        f'<td class="rag-num">{esc(d.get("pages", ""))}</td>'
        f'<td class="rag-num">{esc(d.get("chunks", ""))}</td>'
        f'<td>{open_link(source=str(d.get("source", "")))}</td></tr>'
        for d in documents
    )
    total = sum(int(d.get("chunks", 0) or 0) for d in documents)  # type: ignore[call-overload]
    return (f'<div class="rag-docs"><table class="rag-doc-table"><thead><tr><th>Title</th><th>File</th>'
            f'<th class="rag-num">Pages</th><th class="rag-num">Chunks</th><th></th></tr></thead>'
            f'<tbody>{rows}</tbody></table>'
            f'<p class="rag-meta">{len(documents)} document{"s" if len(documents) != 1 else ""}, '
            f'{total} chunks</p></div>')


def status_html(message: str, ok: bool = True) -> str:
    """A one-line success or error message (escaped)."""
    kind = "rag-ok" if ok else "rag-error"
    role = "status" if ok else "alert"
    return f'<div class="rag-status {kind}" role="{role}">{esc_lines(message)}</div>'
