"""A conversation with the assistant: follow-up questions, saving, restoring, exporting.

>>> conversation = assistant.conversation()
>>> conversation.ask("What is NATO's Defence Production Action Plan?")
>>> answer = conversation.ask("When was it agreed?")    # searched with the plan's name
>>> answer.searched
>>> conversation.save("talk.json")
>>> restored = assistant.load_conversation("talk.json")  # citations re-anchored

A follow-up is rewritten into a standalone question for retrieval by
:func:`rag.followup.rewrite`; the answer records what was searched.  A saved
conversation keeps every citation's document hash, offsets, page and quote, and on
loading each citation is found again in the documents as they are indexed now
(:mod:`rag.anchoring`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.anchoring import STATUS_TEXT, reanchor
from rag.condense import Condenser, clean_condensed
from rag.errors import GenerationError, RagError
from rag.followup import Rewrite, pointing_word, rewrite
from rag.prompts import NO_ANSWER
from rag.types import Answer, Citation

if TYPE_CHECKING:
    from rag.assistant import Assistant

#: Written into every saved conversation; a file of another format is refused.
FORMAT = "rag-conversation/1"
#: Largest conversation file read, in bytes.
MAX_FILE_BYTES = 20_000_000


class ConversationFileError(RagError):
    """A saved conversation cannot be read: missing, not JSON, or not a conversation."""


class Conversation:
    """The turns of one conversation; each question is answered with the ones before it."""

    def __init__(self, assistant: "Assistant", turns: list[Answer] | None = None) -> None:
        self.assistant = assistant
        self.turns: list[Answer] = list(turns or [])

    def standalone(self, question: str, backend: str | None = None) -> Rewrite:
        """What ``question`` would be searched as, after the turns so far.

        Whether it refers back is decided by the rules of :mod:`rag.followup`.  A question
        that does is rewritten by those rules with the extractive backend, and by the
        model with an LLM backend that is set to (:mod:`rag.condense`, the ``rewrite``
        setting); when the model fails or its reply
        is not one question, the rule rewrite is used and the reason says so.
        """
        last = self.turns[-1] if self.turns else None
        if last is None:
            return rewrite(question)
        # The similarity matters only to a question with a referring word: embed only then.
        similarity = self._similarity(question, last.question) if pointing_word(question) else None
        ruled = rewrite(question, last.searched, "" if last.abstained else last.text, similarity)
        generator = self.assistant.generator(backend)
        if not ruled.rewritten or not isinstance(generator, Condenser) or not generator.rewrites:
            return ruled
        history = [(a.searched, NO_ANSWER if a.abstained else a.text) for a in self.turns]
        try:
            condensed = clean_condensed(generator.condense(history, ruled.question))
        except GenerationError as exc:
            return replace(ruled, reason=f"{ruled.reason}; the model could not rewrite it ({exc})")
        if condensed is None:
            return replace(ruled, reason=f"{ruled.reason}; the model's rewrite was not one question")
        if condensed.casefold() == ruled.question.casefold():
            return replace(ruled, reason=f"{ruled.reason}; the model left it as asked")
        return Rewrite(ruled.question, condensed, f"{ruled.reason}; rewritten by {generator.name}")

    def _similarity(self, a: str, b: str) -> float:
        embed = self.assistant.embedder.embed_query
        return float(np.dot(np.asarray(embed(a), dtype=np.float32), np.asarray(embed(b), dtype=np.float32)))

    def ask(self, question: str, k: int | None = None, backend: str | None = None) -> Answer:
        """Answer ``question`` in this conversation (a follow-up is searched as rewritten)."""
        answer: Answer | None = None
        for item in self.stream(question, k=k, backend=backend):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, question: str, k: int | None = None, backend: str | None = None) -> Iterator[str | Answer]:
        """As :meth:`rag.assistant.Assistant.stream`, in this conversation; the answer is kept."""
        searched = self.standalone(question, backend).standalone
        for item in self.assistant.stream(question, k=k, backend=backend, search_for=searched):
            if isinstance(item, Answer):
                self.turns.append(item)
            yield item

    # -- saving and restoring -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The conversation as saved: questions, what was searched, answers and citations."""
        return {
            "format": FORMAT,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "turns": [{"question": a.question, "searched": a.searched, "answer": a.text,
                       "abstained": a.abstained, "backend": a.backend, "notice": a.notice,
                       "citations": [c.to_dict() for c in a.citations]} for a in self.turns],
        }

    def save(self, path: str | Path) -> Path:
        """Write the conversation as JSON to ``path`` atomically; the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, assistant: "Assistant", path: str | Path) -> "Conversation":
        """The conversation saved at ``path``, each citation re-anchored against the index."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ConversationFileError(f"{path} is larger than {MAX_FILE_BYTES // 1_000_000} MB; "
                                            "it is not a saved conversation")
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConversationFileError(f"no saved conversation at {path}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConversationFileError(f"{path} is not a saved conversation (not JSON: {exc})") from None
        return cls.from_dict(assistant, data, str(path))

    @classmethod
    def from_dict(cls, assistant: "Assistant", data: Any, where: str = "the data") -> "Conversation":
        """A conversation from :meth:`to_dict`'s output, its citations re-anchored."""
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("turns"), list):
            raise ConversationFileError(f"{where} is not a saved conversation (format {FORMAT} expected)")
        documents: dict[str, Any] = {}
        turns = []
        try:
            for t in data["turns"]:
                citations = []
                for c in t.get("citations", []):
                    citation = Citation.from_dict(c)
                    if citation.source not in documents:
                        documents[citation.source] = assistant.indexed_document(citation.source)
                    citations.append(reanchor(citation, documents[citation.source]))
                turns.append(Answer(str(t["question"]), str(t["answer"]), citations, [], bool(t["abstained"]),
                                    str(t.get("backend", "")), notice=str(t.get("notice", "")),
                                    searched=str(t.get("searched", ""))))
        except (KeyError, TypeError) as exc:
            raise ConversationFileError(f"{where} has a malformed turn ({exc!r})") from None
        return cls(assistant, turns)

    # -- export ---------------------------------------------------------------------------

    def to_markdown(self) -> str:
        """The conversation as Markdown: each question, its answer, and its sources."""
        lines = ["# Conversation", ""]
        for n, a in enumerate(self.turns, start=1):
            lines += [f"## {n}. {a.question}", ""]
            if a.searched != a.question:
                lines += [f"*Searched for: {a.searched}*", ""]
            lines += [a.text, ""]
            if a.notice:
                lines += [f"> {a.notice}", ""]
            for c in a.citations:
                status = f" ({STATUS_TEXT[c.status]})" if STATUS_TEXT.get(c.status) else ""
                lines.append(f"- [{c.marker}] {c.title}, {c.source}, page {c.page}{status}: \"{c.quote}\"")
            if a.citations:
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"
