"""Answer types of questions, and the support check's rules for numbers and negation."""

from __future__ import annotations

import pytest

from rag.answer_types import expected_type, has_type
from rag.citations import SupportChecker, negated, numbers
from rag.evidence import SentenceEmbeddings
from rag.types import Chunk, Hit


@pytest.mark.parametrize(("question", "kind"), [
    ("How many suppression entries does the file contain?", "number"),
    ("What is the numeric value of the limit?", "number"),
    ("What is the range of the lamp?", "number"),
    ("When was the board created?", "date"),
    ("In which year was the format introduced?", "date"),
    ("Since which version does the decoder accept indefinite lengths?", "version"),
    ("Which release of Debian first shipped systemd?", "version"),
    ("Who chaired the roundtable?", "person"),
    ("Which option turns off the default suppressions?", "name"),
    ("What is the name of the file that lists the packages?", "name"),
    ("When cg_diff compares two profiles, does it compute differences line by line?", None),
    ("What was the exact date of the roundtable?", "date"),
    ("What is the annual budget of the program?", "number"),
    ("What are the names of the panellists who spoke?", "person"),
    ("Which companies sit on the advisory group?", "name"),
    ("What does interchangeability require?", None),
    # Up to three words before the noun that says what is asked, none of them an auxiliary verb.
    ("In which Node.js version did the completer start returning a promise?", "version"),
    ("What is the highest debhelper compatibility level in stable?", "number"),
    ("Which configuration setting enables the conflict style?", "name"),
    ("What does setting the option do when a branch is created?", None),
    ("What does the file contain?", None),
    ("Besides the first author, who designed the cipher?", "person"),
])
def test_expected_type(question: str, kind: str | None) -> None:
    assert expected_type(question) == kind


@pytest.mark.parametrize(("sentence", "question", "kind", "expected"), [
    ("Its lamp has a range of 23 nautical miles.", "What is the range of the lamp?", "number", True),
    ("An old format sometimes used for spreadsheet-like data is DIF.", "In what year was DIF introduced?",
     "date", False),
    ("The board was created in 1940.", "When was the board created?", "date", True),
    ("Since version 4.12 the decoder accepts indefinite lengths.",
     "Since which version does the decoder accept indefinite lengths?", "version", True),
    ("The decoder accepts indefinite lengths.", "Since which version does the decoder accept them?",
     "version", False),
    ("The roundtable was chaired by Jane Doe of the Institute.", "Who chaired the roundtable?", "person", True),
    ("The roundtable was chaired by a retired general.", "Who chaired the roundtable?", "person", False),
    # A value the question itself gives is not an answer.
    ("Stata versions 5 to 12 can be read.", "Can Stata 12 files be read?", "number", True),
    ("Stata 12 files can be read.", "How many Stata 12 files can be read?", "number", False),
    # A year after a time word says when, not how much.
    ("The lighthouse was automated in 1994.", "What is the range of the lamp?", "number", False),
    ("The archive held 2000 reports in March 2001.", "How many reports did the archive hold?", "number", True),
    ("The lighthouse was automated in 1994.", "When was the lighthouse automated?", "date", True),
])
def test_has_type(sentence: str, question: str, kind: str, expected: bool) -> None:
    assert has_type(sentence, kind, question) is expected


def test_numbers_and_negation_helpers() -> None:
    assert numbers("It cost $1,000 in 2024, version 4.2.") == {"1000", "2024", "4.2"}
    assert negated("The plan was not approved.")
    assert negated("Nobody signed it.")
    assert not negated("The plan was approved.")
    assert not negated("It is not true that nothing changed.")  # two negations cancel


PASSAGE = ("The board approved the plan in 2019. The plan was not funded by the province. "
           "Construction began in March 2021 and cost 40 million dollars.")


@pytest.fixture(scope="module")
def checker(embedder) -> SupportChecker:  # noqa: ANN001 - the session's real MiniLM embedder
    return SupportChecker(SentenceEmbeddings(embedder))


def _hit(text: str = PASSAGE) -> Hit:
    chunk = Chunk(id="c1", doc_id="d1", source="plan.txt", title="Plan", text=text, char_start=0,
                  char_end=len(text), page_start=1, page_end=1)
    return Hit(chunk, 1.0, 1)


def test_a_paraphrase_with_matching_numbers_is_supported(checker: SupportChecker) -> None:
    sup = checker.support("The plan was approved by the board in 2019.", _hit())
    assert sup.score >= checker.threshold and "2019" in sup.quote


def test_a_wrong_number_is_not_supported(checker: SupportChecker) -> None:
    assert checker.support("The plan was approved by the board in 2018.", _hit()).score < checker.threshold
    assert checker.support("Construction began in March 2021 and cost 45 million dollars.",
                           _hit()).score < checker.threshold


def test_negation_must_agree(checker: SupportChecker) -> None:
    assert checker.support("The province funded the plan.", _hit()).score < checker.threshold
    assert checker.support("The board did not approve the plan in 2019.", _hit()).score < checker.threshold
    sup = checker.support("The province did not fund the plan.", _hit())
    assert sup.score >= checker.threshold and "not funded" in sup.quote
