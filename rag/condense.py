"""Rewrite a follow-up question into a standalone one with an LLM (LangChain's history-aware pattern).

The prompt is a LangChain ``ChatPromptTemplate``: a system turn that asks for the
question restated so it can be understood alone, the conversation so far as
alternating human and AI turns (``MessagesPlaceholder``), and the new question.
:class:`rag.generators.OpenAIGenerator` runs it as ``template | ChatOpenAI |
StrOutputParser``; :class:`rag.generators.LlamaCppGenerator` renders the same
messages into its model's chat turns.  The model's reply is used only when it is
one plausible question (:func:`clean_condensed`); otherwise the caller keeps the
rule rewrite of :mod:`rag.followup`.

Previous answers are document text: they go through the guard like passages do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rag.guard import neutralise

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.prompts import ChatPromptTemplate

CONDENSE_SYSTEM = (
    "You rewrite the user's latest question so that it can be understood without the conversation. "
    "Replace words such as 'it', 'they', 'that' or 'there' with what they refer to in the conversation, "
    "and keep every name, number and version the question or the conversation gives. "
    "If the question already stands on its own, return it unchanged. "
    "Do not answer it. Reply with the one rewritten question and nothing else."
)
#: Longest previous answer given to the model, in characters (the rewrite needs its names, not all of it).
MAX_ANSWER_CHARS = 600
#: Turns of the conversation given to the model (the rewrite refers to the latest ones).
MAX_TURNS = 2
#: A reply longer than this many characters is not one question (the 1,326 questions of the QA
#: collection and the follow-up set are at most 186 characters long).
MAX_QUESTION_CHARS = 300

_PREFIX = re.compile(r"^\s*(?:\**\s*)?(?:standalone question|rewritten question|question)\s*:\s*\**\s*", re.IGNORECASE)


@runtime_checkable
class Condenser(Protocol):
    """A backend that can rewrite a follow-up into a standalone question."""

    #: Whether it is asked to (the ``rewrite`` setting); when not, the rules rewrite follow-ups.
    rewrites: bool

    def condense(self, history: list[tuple[str, str]], question: str) -> str:
        """The model's raw reply for ``question`` after ``history`` of (question, answer) turns."""
        ...


def condense_template() -> "ChatPromptTemplate":
    """The history-aware rewrite prompt: system rules, the conversation, the new question."""
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    return ChatPromptTemplate.from_messages(
        [("system", CONDENSE_SYSTEM), MessagesPlaceholder("chat_history"), ("human", "{input}")])


def chat_history(history: list[tuple[str, str]]) -> list["BaseMessage"]:
    """The last :data:`MAX_TURNS` turns as LangChain messages, answers guarded and shortened."""
    from langchain_core.messages import AIMessage, HumanMessage

    messages: list[BaseMessage] = []
    for question, answer in history[-MAX_TURNS:]:
        text = " ".join(neutralise(answer).split())
        if len(text) > MAX_ANSWER_CHARS:
            text = text[:MAX_ANSWER_CHARS].rsplit(" ", 1)[0] + " …"
        messages += [HumanMessage(" ".join(question.split())), AIMessage(text)]
    return messages


def condense_inputs(history: list[tuple[str, str]], question: str) -> dict[str, object]:
    """The template's variables for ``question`` after ``history``."""
    return {"chat_history": chat_history(history), "input": " ".join(question.split())}


def condense_messages(history: list[tuple[str, str]], question: str) -> list["BaseMessage"]:
    """The rewrite prompt as messages, for backends that do not run LangChain chains."""
    return condense_template().format_messages(**condense_inputs(history, question))


def clean_condensed(reply: str) -> str | None:
    """The question in a model's reply, or ``None`` when the reply is not one usable question
    (empty, an answer rather than a question, several lines of questions, or too long)."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return None
    text = _PREFIX.sub("", lines[0]).strip().strip("\"“”'`*").strip()
    if not text.endswith("?") or len(text) > MAX_QUESTION_CHARS or len(text.split()) < 3:
        return None
    return text
