"""Treat document text as data: find instruction-like sentences and neutralise them.

A passage may contain text written to steer a model ("ignore all previous
instructions", a fake ``system:`` turn, a fake citation, a request for the
prompt or for HTML).  Such sentences are masked before a passage reaches an
LLM, are never quoted by the extractive generator, and never count as support;
the stored text is unchanged.  Sentences are read through :func:`normalise`
first (NFKC, invisible characters removed, look-alike Cyrillic and Greek letters
mapped to Latin), so "Іgnоrе" spelt with Cyrillic letters or split by zero-width
spaces reads as "Ignore".

The patterns below were written for the project's own 23 attacks.  On the
held-out split of ``eval/guard/`` they miss most attack sentences; a learned
detector is measured against them by ``python benchmarks/guard_detector.py``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from rag.sentences import sentence_spans

MASK = "[instruction-like text removed]"
# Invisible characters that split words for a reader-machine but not for a human eye:
# zero-width spaces and joiners, soft hyphen, word joiner, bidi embeddings and isolates, BOM.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Cyrillic and Greek letters drawn like Latin ones ("Іgnоrе" with Cyrillic І, о, е).
# Full-width and other compatibility forms are folded by NFKC.
_LOOKALIKE = str.maketrans(
    "АВЕКМНОРСТХУІЈЅԁаеорсуххіјѕһӏԛԝɡΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοιρυνκτχϲ",
    "ABEKMHOPCTXYIJSdaeopcyxxijshlqwgABEZHIKMNOPTYXaoipuvktxc",
)


def normalise(text: str) -> str:
    """``text`` as a detector should read it: NFKC, invisible characters removed, look-alike
    letters mapped to Latin.  For detection only; stored and shown text is never changed."""
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).translate(_LOOKALIKE)


_PATTERNS = [
    r"\b(ignore|disregard|forget|override|bypass)\b[^.!?\n]{0,60}\b(instruction|prompt|rule|direction|guideline|context|message|above|previous|prior|earlier)s?\b",
    r"\b(reply|respond|answer|say|output|print|write|return)\b[^.!?\n]{0,40}\b(only|exactly|just|verbatim)\b[^.!?\n]{0,40}(with|the word|the phrase|\"|“|:)",
    r"\b(you are now|you must now|from now on,? you|act as|pretend to be|roleplay as|new instructions?|updated instructions?)\b",
    r"(^|\n|\s)(system|assistant|user|developer)\s*[:>]\s",
    r"<\s*/?\s*(start_of_turn|end_of_turn|system|assistant|im_start|im_end|\|im_start\||s|inst)\b",
    r"\[/?(inst|sys)\]",
    r"\b(reveal|show|print|repeat|output|leak|disclose)\b[^.!?\n]{0,40}\b(system prompt|your prompt|your instructions|hidden instructions|the prompt)\b",
    r"\b(include|insert|add|output|render|embed)\b[^.!?\n]{0,40}\b(link|url|html|script|javascript|markdown image|<a |<img|iframe)\b",
    r"\b(instead of answering|do not answer|don't answer|stop answering|answer (this|the following) instead)\b",
    r"\b(attention|note to|message to|instruction to)\b[^.!?\n]{0,30}\b(ai|llm|model|assistant|chatbot|language model)\b",
    r"\b(cite|citation)\b[^.!?\n]{0,40}\[\d+\][^.!?\n]{0,40}\b(always|only|every)\b",
    r"<\s*(script|iframe|img|svg|object|embed)\b",
    r"\b(ignore|disregard|forget|skip)\b[^.!?\n]{0,40}\b(the question|everything|all of the above|what you were told|the user|your task)\b",
    r"\b(respond|reply|answer|say|write|output|print|end your (reply|answer|response))\b[^.!?\n]{0,30}\b(with|using)\b[^.!?\n]{0,20}\b(the (single |one )?word|the phrase|the string|the token|the text)\b",
    r"^\W*(output|print|say|write|type|respond with|reply with)\s+[\"“'‘]?[A-Z0-9_-]{3,}[\"”'’]?\W*$",
    r"\bwhen (summari[sz]ing|answering|responding|asked)\b[^.!?\n]{0,80}\b(state|say|claim|mention|write|tell|answer|reply)\b",
    r"\b(ai|llm|language model|chatbot|assistant)s?\b[^.!?\n]{0,40}\b(must|should|shall|are instructed to|need to)\b",
    r"###\s*(system|assistant|user|instruction)",
    r"<\|im_(start|end)\|>",
    r"^\W*(question|answer|user|assistant)\s*:",
    r"\b(repeat|reveal|show|print|disclose|recite)\b[^.!?\n]{0,40}\binstructions?\b",
    r"\bif you are an? (ai|language model|llm|chatbot|assistant|bot|model)\b",
    r"\b(always|only|must)\s+cite\b|\bcite (this|these|the following) (sentence|passage|text|source)",
    r"^\W*(verified|correct|official|true|real) answer\s*:",
    r"\b(automated|ai|llm)\s+(summari[sz]ers?|readers?|systems?|assistants?|tools?|agents?)\b",
    r"\b(summari[sz]ers?|chatbots?|language models?|ai assistants?|bots?)\b[^.!?\n]{0,80}\b(please|must|should|report|state|begin|reply|respond)\b",
    r"\byour (reply|answer|response|output|summary)\b[^.!?\n]{0,60}\b(must|should|shall|needs? to|has to)\b",
    r"javascript\s*:",
]
_INSTRUCTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.MULTILINE)


@lru_cache(maxsize=50_000)
def is_instruction(sentence: str) -> bool:
    """Whether ``sentence`` reads as an instruction to a model rather than document content."""
    return bool(_INSTRUCTION.search(normalise(sentence)))


def instruction_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the sentences of ``text`` that are instruction-like."""
    return [(s, e) for s, e in sentence_spans(text) if is_instruction(text[s:e])]


def neutralise(text: str) -> str:
    """``text`` with instruction-like sentences masked and prompt delimiters defused."""
    out, pos = [], 0
    for s, e in instruction_spans(text):
        out.append(text[pos:s])
        out.append(MASK)
        pos = e
    out.append(text[pos:])
    cleaned = "".join(out)
    # Passage fences and chat-turn tokens cannot be forged from inside a document.
    cleaned = re.sub(r"<{2,}|>{2,}", "", cleaned)
    cleaned = re.sub(r"<\s*/?\s*(start_of_turn|end_of_turn)\s*>", "", cleaned, flags=re.IGNORECASE)
    return cleaned
