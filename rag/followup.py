"""Turn a follow-up question into one that stands on its own, without a model.

A question *refers back* when

- it opens with "what about", "how about", "and …" or "what else";
- it leans on a word that points at something said before ("it", "its", "they",
  "them", "their", "he", "she", "this …", "these …", "that" with no noun of its
  own, a closing "there" or "then") and either has few content words of its own
  (at most :data:`MAX_OWN_TERMS` that the previous question does not hold: "Can
  users change their password?" names its own subject, "When was it agreed?" does
  not) or is about what the previous question was about (MiniLM similarity of the
  two questions at least :data:`MIN_TOPIC_SIMILARITY`: "By how much does enabling it
  slow Cachegrind down?" after a question on a Cachegrind option); or
- it has at most one content word and no name of its own ("Why?", "Since when?",
  "Which version?"); or
- it is a preposition and a question word with no verb ("Since which Node.js
  release?", "In which version?").

Such a question is searched with the content words of the conversation's previous
standalone question appended ("What about X?" puts X in place of the name the
previous question asked about), and, when it has no content word at all, the names
in the previous answer.  Any other question is searched as asked.  The word lists
are English grammar, not words of any document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.answer_types import AUXILIARIES
from rag.lexical import tokenize

#: Pronouns that point back at something named earlier (English grammar).
REFERRING = frozenset("it its itself they them their theirs themselves he him his she her hers".split())
#: Determiners that point back ("this option", "these files").
DEMONSTRATIVES = frozenset("this these those".split())
#: Words that point back only at the end of a question ("Who said that?", "What happened then?").
CLOSING = frozenset("that there then".split())
#: Most content words of its own a question with a referring word may have and still be a
#: follow-up.  Chosen on the tune split of eval/followups.jsonl by
#: ``rag eval eval/followups.jsonl --split tune`` (its "own_terms_grid": the value that finds the
#: evidence for the most follow-ups while leaving at least 95 % of standalone questions unchanged).
MAX_OWN_TERMS = 2
#: Least similarity with the previous question for which a question that points back but names
#: more of its own is still rewritten.  Chosen on the same tune split by the same command
#: ("topic_grid", with MAX_OWN_TERMS fixed): 0.35 to 0.6 all score best there; this is the middle.
MIN_TOPIC_SIMILARITY = 0.45
#: A question with at most this many content words of its own and no name is a follow-up even
#: without a referring word ("And the year?").  0, 1 and 2 score the same on the 24 tune follow-ups
#: (evidence in the top 5 for 0.958, standalone questions unchanged 1.0;
#: ``python benchmarks/answer_constants.py``): the tune set does not tell them apart.
NAMELESS_TERMS = 1
#: Names taken from the previous answer when a follow-up names nothing itself ("When was it
#: agreed?" after an answer naming the plan).  0, 3, 6 and 10 score the same on the 24 tune
#: follow-ups (0.958, 1.0; ``python benchmarks/answer_constants.py``): the tune set does not tell
#: them apart, and 6 is a judgement, enough for a plan's or person's full name.
ANSWER_NAMES = 6

# "Is it possible to …", "How long does it take to …": "it" that points at nothing.
_EXPLETIVE = re.compile(r"\b(?:is|was|does|did|will|would|can|could|should)\s+it\s+(?:possible|necessary|true|"
                        r"allowed|permitted|safe|legal|ok|okay|required|mandatory|recommended|advisable|"
                        r"take|cost|matter)\b|\bit\s+(?:is|was)\s+\w+\s+to\b|\bit\s+takes?\b", re.IGNORECASE)
# A question cut down to a preposition and a question word, with no verb of its own:
# "Since which Node.js release?", "In which version?", "For how long?".
_FRAGMENT = re.compile(r"^\s*(?:since|in|on|at|for|from|until|till|by|after|before|under|with)\s+"
                       r"(?:which|what|when|where|whom|how)\b(?:\W+\w[\w.+-]*){0,4}\W*$", re.IGNORECASE)
_AUXILIARY = re.compile(rf"\b(?:{'|'.join(AUXILIARIES + ('may', 'might'))})\b", re.IGNORECASE)
_OPENER = re.compile(r"^\s*(?:(?:what|how)\s+about|and|what\s+else)\b[\s,]*", re.IGNORECASE)
_WORD = re.compile(r"[\w'’./+-]*\w|\w")
# Question grammar: never carried into the search.
_QUESTION = frozenset(tokenize("what which who whom whose when where why how many much does did do is are was "
                               "were can could should would will may might must describe explain name give "
                               "list tell about also else"))


@dataclass(frozen=True)
class Rewrite:
    """What was searched for a question asked in a conversation."""

    question: str      # as asked
    standalone: str    # what retrieval and evidence selection saw
    reason: str        # why it was (or was not) rewritten

    @property
    def rewritten(self) -> bool:
        return self.standalone != self.question


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _content(words: list[str]) -> list[str]:
    """The words of ``words`` that carry meaning (not stop words nor question grammar)."""
    return [w for w in words if (t := tokenize(w)) and not set(t) <= _QUESTION]


def _name_like(word: str, first: bool) -> bool:
    """A proper or code-like token: capitalised (not as the question's first word), or with
    a digit or one of ``/ . _ -`` inside."""
    return bool(re.search(r"\w[/._-]\w|\d|^[-/.]", word)) or (not first and word[:1].isupper())


def own_terms(question: str, previous: str = "") -> list[str]:
    """The question's content words (without referring words and question grammar) that the
    previous question does not already hold."""
    before = set(tokenize(previous))
    return [w for w in _content(_words(question)) if not set(tokenize(w)) <= before]


def pointing_word(question: str) -> str:
    """The first word of ``question`` that points back at something said before, or ''."""
    lower = [w.lower() for w in _words(question)]
    pointing = [w for n, w in enumerate(lower) if w in REFERRING or w in DEMONSTRATIVES
                or (w in CLOSING and n == len(lower) - 1)]
    if "it" in pointing and _EXPLETIVE.search(question) and lower.count("it") == 1:
        pointing.remove("it")
    return pointing[0] if pointing else ""


def refers_back(question: str, previous: str, similarity: float | None = None) -> str:
    """Why ``question`` needs ``previous`` to be understood, or '' when it stands on its own.
    ``similarity`` is the two questions' embedding similarity (None: not known)."""
    if _OPENER.match(question):
        return "it continues the previous question"
    words = _words(question)
    own = own_terms(question, previous)
    pointing = pointing_word(question)
    if pointing and len(own) <= MAX_OWN_TERMS:
        return f"'{pointing}' refers to the previous question"
    if pointing and similarity is not None and similarity >= MIN_TOPIC_SIMILARITY:
        return f"'{pointing}' refers to the previous question, which was about the same (similarity {similarity:.2f})"
    names = [w for n, w in enumerate(words) if _name_like(w, n == 0) and tokenize(w)]
    if len(own) <= NAMELESS_TERMS and not names and previous:
        return "it names nothing of its own"
    if previous and _FRAGMENT.match(question) and not _AUXILIARY.search(question):
        return "it is the fragment of a question"
    return ""


def rewrite(question: str, previous: str = "", previous_answer: str = "",
            similarity: float | None = None) -> Rewrite:
    """``question`` as a standalone question, given the conversation's previous standalone
    question, the text of its answer ('' when there is none) and, when known, the embedding
    similarity of ``question`` and ``previous``."""
    q = " ".join(question.split())
    if not previous:
        return Rewrite(q, q, "first question")
    why = refers_back(q, previous, similarity)
    if not why:
        return Rewrite(q, q, "stands on its own")
    opener = _OPENER.match(q)
    if opener:
        rest = q[opener.end():].rstrip(" ?.!")
        rest_words = _words(rest)
        new_names = [w for n, w in enumerate(rest_words) if _name_like(w, False) and tokenize(w)]
        if new_names or rest_words:
            # "What about Canada?" after "How many frigates does Australia buy?": the previous
            # question with its name replaced, or with the new subject added when it names none.
            spans = _name_run(previous)
            if spans and new_names:
                a, b = spans
                return Rewrite(q, f"{previous[:a]}{rest}{previous[b:]}", why)
            return Rewrite(q, f"{previous.rstrip(' ?.!')} {rest}?", why)
    carried_text = _carry(q, previous, previous_answer)
    if not carried_text:
        return Rewrite(q, q, "nothing to carry over")
    return Rewrite(q, f"{q} ({carried_text})", why)


def _carry(q: str, previous: str, previous_answer: str) -> str:
    """The words of the previous question (and, when ``q`` names nothing, the names in the
    previous answer) to search with ``q``."""
    own = {t for w in own_terms(q) for t in tokenize(w)}
    carried = [w for w in _content(_words(previous)) if not set(tokenize(w)) <= own]
    if not own_terms(q) and previous_answer:
        names = [w for n, w in enumerate(_words(previous_answer))
                 if _name_like(w, False) and not re.search(r"\d", w) and tokenize(w)]
        carried += [w for w in dict.fromkeys(names) if w not in carried][:ANSWER_NAMES]
    return " ".join(dict.fromkeys(carried))


def _name_run(text: str) -> tuple[int, int] | None:
    """Character span of the first run of name-like words in ``text`` (not its first word)."""
    matches = list(_WORD.finditer(text))
    start = end = None
    for n, m in enumerate(matches):
        if n > 0 and _name_like(m.group(), False) and tokenize(m.group()):
            if start is None:
                start = m.start()
            end = m.end()
        elif start is not None:
            break
    return (start, end) if start is not None and end is not None else None
