"""Treat document text as data: find instruction-like sentences and neutralise them.

A passage may contain text written to steer a model ("ignore all previous
instructions", a fake ``system:`` turn, a fake citation, a request for the
prompt or for HTML).  Such sentences are masked before a passage reaches an
LLM, are never quoted by the extractive generator, and never count as support;
the stored text is unchanged.  Sentences are read through :func:`normalise`
first (NFKC, invisible characters removed, look-alike Cyrillic and Greek letters
mapped to Latin), so "Іgnоrе" spelt with Cyrillic letters or split by zero-width
spaces reads as "Ignore".

A sentence is instruction-like when one of the patterns below matches it (they were
written first for the project's own 23 attacks, then narrowed on the train split of
``eval/guard/`` so that ordinary directive sentences pass), or when a logistic model says
so: hashed character 3–5-grams and word 1–2-grams of the normalised sentence plus one
feature per pattern, fitted on the ``train`` split of ``eval/guard/`` (attacks of many
styles and languages, ordinary sentences of real documents, many of them directive) by
``python -m rag.guard_train``.  Its threshold is the lowest that, together with the
patterns, masks at most 1 % of the directive ordinary sentences (0.5 % of a broad sample)
out of fold.  ``python benchmarks/guard_detector.py`` measures it on the ``test`` split.
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from rag.errors import RagError
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


# A model, an assistant or an automated reader told what to *say*: the verbs of answering,
# reporting and leaving out.  Job titles ("The assistant commissioner must sign …"), rules for
# AI systems ("Automated systems must be audited …") and deadlines ("Your response must be
# received by …") use other verbs, so they are ordinary text.  Narrowing the patterns this way
# kept every attack sentence of the train split of eval/guard/ that they caught (14.4 %) and
# took the directive ordinary sentences they masked from 3.2 % to 0.7 % (0.09 % to 0.03 % of the
# broad sample); ``python benchmarks/guard_detector.py`` measures the test split.
_TELL = (r"(?:say|tell|state|answer|reply|respond|report|disclose|reveal|mention|claim|describe|present|"
         r"refer\s+to|recommend|rank|treat|ignore|disregard|omit|leave\s+out|forward|quote|cite|summari[sz]e|"
         r"write|output|print|open\s+with|begin\s+with|start\s+with|end\s+with|call|add\s+that|include\s+that|"
         r"note\s+that|confirm\s+that|list\s+the\s+\w+\s+as)")
_ADV = r"(?:(?:not|never|always|only|also|instead|now)\s+)?"

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
    r"\b(ai|llm|language model|chatbot|assistant)s?\b[^.!?\n]{0,40}\b(must|should|shall|are instructed to|need to|is to|are to)\s+"
    + _ADV + _TELL + r"\b",
    r"###\s*(system|assistant|user|instruction)",
    r"<\|im_(start|end)\|>",
    r"^\W*(user|assistant)\s*:|^\W*(question|answer)\s*:[^\n]*\[\d+\]",
    r"\b(repeat|reveal|show|print|disclose|recite)\b[^.!?\n]{0,40}\binstructions?\b",
    r"\bif you are an? (ai|language model|llm|chatbot|assistant|bot|model)\b",
    r"\b(always|only|must)\s+cite\b|\bcite (this|these|the following) (sentence|passage|text|source)",
    r"^\W*(verified|correct|official|true|real) answer\s*:",
    r"\b(automated|ai|llm)\s+(summari[sz]ers?|readers?|agents?)\b",
    r"\b(automated|ai|llm)\s+(systems?|assistants?|tools?)\b(?:[^.!?\n]{0,60}\b(this|these)\b|[^.!?\n]{0,40}"
    r"\b(must|should|shall|to|are expected to)\s+" + _ADV + _TELL + r"\b)",
    r"\b(summari[sz]ers?|chatbots?|language models?|ai assistants?|bots?)\b[^.!?\n]{0,80}\b(please|must|should|report|state|begin|reply|respond)\b",
    r"\byour (reply|answer|response|output|summary)\b[^.!?\n]{0,60}\b(must|should|shall|needs? to|has to)\s+" + _ADV
    + r"(?:be\s+exactly|" + _TELL + r")\b",
    r"javascript\s*:",
]
_COMPILED = [re.compile(p, re.IGNORECASE | re.MULTILINE) for p in _PATTERNS]

#: Hashed n-gram features (crc32 modulo DIM), then one feature per pattern.
DIM = 1 << 17
MODEL_PATH = Path(__file__).parent / "models" / "guard.npz"


def _matching(norm: str) -> list[int]:
    """The patterns that match the normalised sentence ``norm``, by number."""
    return [k for k, pattern in enumerate(_COMPILED) if pattern.search(norm)]


def _features(norm: str, matching: list[int]) -> tuple[np.ndarray, np.ndarray]:
    low = " " + " ".join(norm.lower().split()) + " "
    grams = {low[i:i + n] for n in (3, 4, 5) for i in range(len(low) - n + 1)}
    words = re.findall(r"\w+", low)
    grams |= {"w:" + w for w in words} | {"b:" + a + " " + b for a, b in zip(words, words[1:])}
    idx = sorted({zlib.crc32(g.encode("utf-8")) % DIM for g in grams})
    values = [1.0 / math.sqrt(max(1, len(idx)))] * len(idx) + [1.0] * len(matching)
    return np.array(idx + [DIM + k for k in matching], dtype=np.int64), np.array(values, dtype=np.float64)


def features(sentence: str) -> tuple[np.ndarray, np.ndarray]:
    """(column indices, values) of the detector's features of ``sentence``: its distinct hashed
    character 3–5-grams and word 1–2-grams (each 1/sqrt(count), so long sentences do not weigh
    more) and a 1 for every pattern that matches."""
    norm = normalise(sentence)
    return _features(norm, _matching(norm))


class GuardModelError(RagError):
    """The detector's model file is missing or was fitted on other features."""


@cache
def _model() -> tuple[np.ndarray, float, float]:
    """(coefficients, intercept, threshold) of the shipped detector."""
    try:
        with np.load(MODEL_PATH, allow_pickle=False) as data:
            coef = data["coef"].astype(np.float64)
            intercept, threshold = float(data["intercept"]), float(data["threshold"])
            patterns = [str(p) for p in data["patterns"]]
    except (OSError, KeyError, ValueError) as exc:
        raise GuardModelError(f"the guard model {MODEL_PATH} is unreadable ({exc}); "
                              "refit it with: python -m rag.guard_train") from None
    if coef.shape != (DIM + len(_PATTERNS),) or patterns != _PATTERNS:
        raise GuardModelError(f"the guard model {MODEL_PATH} was fitted on other features; "
                              "refit it with: python -m rag.guard_train")
    return coef, intercept, threshold


def _probability(idx: np.ndarray, values: np.ndarray) -> float:
    coef, intercept, _ = _model()
    return 1.0 / (1.0 + math.exp(-(float(coef[idx] @ values) + intercept)))


def instruction_probability(sentence: str) -> float:
    """The detector's probability that ``sentence`` is an instruction to a model."""
    return _probability(*features(sentence))


@lru_cache(maxsize=50_000)
def is_instruction(sentence: str) -> bool:
    """Whether ``sentence`` reads as an instruction to a model rather than document content."""
    norm = normalise(sentence)
    if any(p.search(norm) for p in _COMPILED):
        return True
    return _probability(*_features(norm, [])) >= _model()[2]  # no pattern matched: no pattern feature


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
