"""Unit tests of the evaluation metrics on tiny hand-made cases.

Every expected value below is computed by hand in the comments next to it, from
the definitions in rag.metrics (coverage, ranks, F1, percentiles) and
rag.evaluation (citation precision/recall, support, abstention, per kind).
"""

from __future__ import annotations

from typing import Any

import pytest

from rag.evaluation import QAItem, _score, summarise
from rag.metrics import covers, normalise, percentile, recall_at, reciprocal_rank, token_f1, words

approx = pytest.approx


# -- normalisation -------------------------------------------------------------

def test_normalise_lowercases_nfkc_and_straightens_quotes() -> None:
    assert normalise("The ‘Chatham’ “House” Rule") == "the 'chatham' \"house\" rule"
    assert normalise("„low‟ ‚single‛") == "\"low\" 'single'"
    # NFKC: the "fi" ligature and full-width letters and digits become plain ASCII.
    assert normalise("ﬁnal ＦＡＱ ３５") == "final faq 35"


def test_words_split_on_punctuation() -> None:
    assert words("The F-35's “jets”, ordered in 2024.") == ["the", "f", "35", "s", "jets", "ordered", "in", "2024"]
    assert words("States’ history") == words("States' history") == ["states", "history"]
    assert words(" .,;!? ") == []


# -- covers ----------------------------------------------------------------------

def test_covers_exactly_half_of_the_four_grams_is_enough() -> None:
    # 5 words -> 2 four-grams: (the quick brown fox), (quick brown fox jumps).
    quote = "the quick brown fox jumps"
    assert covers("yesterday the quick brown fox slept", quote)      # 1 of 2: 1 * 2 >= 2
    assert covers("so the quick brown fox jumps high", quote)        # 2 of 2
    assert not covers("quick brown the fox jumps", quote)            # 0 of 2 (all words, wrong order)


def test_covers_less_than_half_is_not_enough() -> None:
    # 6 words -> 3 four-grams: (alpha beta gamma delta), (beta gamma delta epsilon),
    # (gamma delta epsilon zeta).
    quote = "alpha beta gamma delta epsilon zeta"
    assert not covers("alpha beta gamma delta and more", quote)      # 1 of 3: 2 < 3
    assert covers("alpha beta gamma delta epsilon and more", quote)  # 2 of 3: 4 >= 3
    assert covers("x gamma delta epsilon zeta", quote) is False      # 1 of 3
    assert covers("beta gamma delta epsilon zeta", quote)            # 2 of 3


def test_covers_four_word_quote_needs_its_single_gram() -> None:
    quote = "Permanent Joint Board on"     # 4 words -> 1 four-gram
    assert covers("the Permanent Joint Board on Defense", quote)
    assert not covers("the Joint Permanent Board on Defense", quote)


def test_covers_short_quotes_need_all_words_in_any_order() -> None:
    quote = "Chatham House rule"           # 3 words: every word must occur
    assert covers("the rule named after Chatham House", quote)
    assert not covers("Chatham House only", quote)
    assert covers("a NATO member", "NATO")
    assert not covers("a member", "NATO")


def test_covers_lowercases_nfkc_and_curly_quotes() -> None:
    assert covers("THE QUICK BROWN FOX JUMPS", "the quick brown fox jumps")
    assert covers("the final report was published", "the ﬁnal report was published")   # ligature
    assert covers("Canada’s “defence” industrial base", "Canada's \"defence\" industrial base")
    assert covers("Canada's \"defence\" industrial base", "Canada’s “defence” industrial base")
    assert covers("ordered ８８ Ｆ-35 jets today", "ordered 88 F-35 jets")                 # full-width


def test_covers_empty_quote_is_never_covered() -> None:
    assert not covers("anything at all", "")
    assert not covers("anything at all", " … — ")
    assert not covers("", "some words here now")


# -- recall@k and reciprocal rank -------------------------------------------------

Q1 = "the board met in nineteen forty"
Q2 = "steel supply chains are fragile"
P_NONE = "Weather in spring is mild and wet."
P_Q1 = "History: the board met in nineteen forty in Ogdensburg."
P_Q2 = "Experts said steel supply chains are fragile today."


def test_recall_at_k() -> None:
    passages = [P_NONE, P_Q1, P_Q2]
    assert recall_at(passages, [Q1, Q2], 1) == 0.0     # neither quote in the first passage
    assert recall_at(passages, [Q1, Q2], 2) == 0.5     # Q1 only
    assert recall_at(passages, [Q1, Q2], 3) == 1.0     # both
    assert recall_at([P_Q1, P_NONE, P_NONE], [Q1, Q2], 1) == 0.5
    assert recall_at([P_Q1, P_NONE, P_NONE], [Q1, Q2], 3) == 0.5
    assert recall_at([P_Q1 + " " + P_Q2], [Q1, Q2], 1) == 1.0   # one passage may cover several quotes
    assert recall_at(passages, [], 3) == 0.0            # no quotes (unanswerable): 0 by definition
    assert recall_at([], [Q1], 3) == 0.0


def test_reciprocal_rank() -> None:
    assert reciprocal_rank([P_Q1, P_NONE], [Q1]) == 1.0
    assert reciprocal_rank([P_NONE, P_Q1, P_Q2], [Q1, Q2]) == 0.5          # first covering: rank 2
    assert reciprocal_rank([P_NONE, P_NONE, P_Q2], [Q1, Q2]) == approx(1 / 3)
    assert reciprocal_rank([P_NONE, P_NONE, P_Q2], [Q1, Q2], k=2) == 0.0   # beyond k
    assert reciprocal_rank([P_NONE] * 3, [Q1]) == 0.0
    assert reciprocal_rank([P_Q1], []) == 0.0


# -- token F1 -----------------------------------------------------------------------

def test_token_f1_identical_answers_ignore_markers_case_and_punctuation() -> None:
    assert token_f1("The Chatham House rule [1].", "the Chatham House rule") == 1.0
    assert token_f1("In 1940 [1][2]. Yes [1, 3]", "in 1940 yes") == 1.0


def test_token_f1_partial_overlap() -> None:
    # pred [chatham, house, rule, applies] (markers "[1, 2]" dropped), gold [the, chatham, house, rule]
    # common 3: P = 3/4, R = 3/4, F1 = 0.75.  With the markers kept, P would be 3/6.
    assert token_f1("Chatham House [1, 2] rule applies", "the Chatham House rule") == approx(0.75)
    # pred [the, the, the], gold [the, cat]: common = min(3, 1) = 1, P = 1/3, R = 1/2,
    # F1 = 2 * (1/6) / (5/6) = 0.4
    assert token_f1("the the the", "the cat") == approx(0.4)
    # pred [in, nineteen, forty, at, the, board] vs gold [nineteen, forty]: P = 2/6, R = 1, F1 = 0.5
    assert token_f1("In nineteen forty at the board [3].", "Nineteen forty.") == approx(0.5)


def test_token_f1_degenerate_cases() -> None:
    assert token_f1("completely different", "nothing shared") == 0.0
    assert token_f1("[1]", "an answer") == 0.0        # only a marker: nothing predicted
    assert token_f1("an answer", "") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("[2].", "...") == 1.0             # both empty after stripping


# -- percentile ------------------------------------------------------------------------

def test_percentile_linear_interpolation() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 95) == 7.0
    xs = [4.0, 1.0, 3.0, 2.0]                          # sorted: 1 2 3 4
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(xs, 50) == approx(2.5)           # pos 1.5 -> 2 + 0.5 * (3 - 2)
    assert percentile(xs, 95) == approx(3.85)          # pos 2.85 -> 3 + 0.85 * (4 - 3)
    assert percentile([10.0, 20.0], 25) == approx(12.5)
    assert xs == [4.0, 1.0, 3.0, 2.0]                  # input not sorted in place


# -- scoring of result rows ------------------------------------------------------------------

QA = "the board met in nineteen forty"
QB = "steel supply chains are fragile"
QC = "munitions output must double soon"
QD = "the embassy hosted the roundtable"
PA = "History: the board met in nineteen forty in Ogdensburg."
PB = "Experts said steel supply chains are fragile today."
PC = "Officials agree munitions output must double soon."
PD = "In October the embassy hosted the roundtable."
X1 = "Unrelated text about weather patterns in spring."
X2 = "Another unrelated passage on fishing quotas."
NO = "The documents do not contain an answer to this question."


def _item(id_: str, kind: str, quotes: list[str], answer: str | None) -> QAItem:
    return QAItem(id_, f"question {id_}?", answer, bool(quotes), kind,
                  [{"doc": "report.txt", "quote": q} for q in quotes])


ITEMS = [
    _item("a1", "factoid", [QA], "In nineteen forty."),
    _item("a2", "list", [QB, QC], "Steel supply chains are fragile and munitions output must double."),
    _item("a3", "factoid", [QD], "The embassy."),
    _item("u1", "unanswerable", [], None),
    _item("u2", "unanswerable", [], None),
]


def _row(id_: str, retrieved: list[str], cited: list[str], answer: str, abstained: bool,
         checks: dict[str, int], latency: float, config: str = "A") -> dict[str, Any]:
    return {"id": id_, "config": config, "retrieved": retrieved, "cited": cited, "answer": answer,
            "abstained": abstained, "checks": checks, "latency_s": latency}


def _rows(config: str = "A") -> list[dict[str, Any]]:
    return [
        # a1: QA at rank 2; cites PA (good) and X1 (bad); 2 sentences, 1 supported.
        _row("a1", [X1, PA, X2], [PA, X1], "The board met in nineteen forty [1].", False,
             {"sentences": 2, "supported": 1}, 0.1, config),
        # a2: QB at rank 1, QC at rank 3; cites PB only.
        _row("a2", [PB, X1, PC], [PB], "Steel supply chains are fragile [1].", False,
             {"sentences": 1, "supported": 1}, 0.2, config),
        # a3: QD at rank 3; abstained (false abstention).
        _row("a3", [X2, X1, PD], [], NO, True, {}, 0.3, config),
        # u1: correctly abstained.
        _row("u1", [X1, X2], [], NO, True, {}, 0.4, config),
        # u2: answered an unanswerable question, citing PA (a citation covering no quote).
        _row("u2", [PA], [PA], "The board met in nineteen forty [1].", False,
             {"sentences": 1, "supported": 1}, 1.0, config),
    ]


def test_score_overall_hand_computed() -> None:
    m = _score(_rows(), {i.id: i for i in ITEMS})
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (5, 3, 2)
    # recall@1: a1 0, a2 1/2 (QB only), a3 0 -> (0 + 0.5 + 0) / 3
    assert m["recall@1"] == approx(1 / 6)
    # recall@3 (and 5, 10): every quote is within the first 3 -> 1
    assert m["recall@3"] == m["recall@5"] == m["recall@10"] == approx(1.0)
    # MRR: a1 1/2, a2 1, a3 1/3 -> 11/6 / 3 = 11/18
    assert m["mrr@10"] == approx(11 / 18)
    # cited passages: PA (a1, covers QA), X1 (a1, bad), PB (a2, covers QB), PA (u2: no quotes, bad) -> 2/4
    assert m["citation_precision"] == approx(0.5)
    # answerable quotes: QA cited, QB cited, QC not, QD not -> 2/4
    assert m["citation_recall"] == approx(0.5)
    # sentences 2 + 1 + 1 = 4, supported 1 + 1 + 1 = 3
    assert m["support_rate"] == approx(0.75)
    # a1: pred [the board met in nineteen forty] vs [in nineteen forty]: P 1/2, R 1 -> 2/3
    # a2: pred 5 tokens, gold 10, all 5 shared: P 1, R 1/2 -> 2/3;  a3 abstained -> 0
    assert m["answer_f1"] == approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["abstention_rate"] == approx(0.5)          # u1 yes, u2 no
    assert m["false_abstention_rate"] == approx(1 / 3)  # a3 of a1..a3
    # latencies 0.1 0.2 0.3 0.4 1.0: p50 pos 2 -> 0.3; p95 pos 3.8 -> 0.4 + 0.8 * 0.6
    assert m["latency_p50_s"] == approx(0.3)
    assert m["latency_p95_s"] == approx(0.88)


def test_summarise_per_kind_hand_computed() -> None:
    summary = summarise(_rows(), ITEMS)
    assert list(summary) == ["A"]
    by_kind = summary["A"]["by_kind"]
    assert list(by_kind) == ["factoid", "list", "unanswerable"]   # sorted

    f = by_kind["factoid"]                                          # a1 and a3
    assert (f["questions"], f["answerable"], f["unanswerable"]) == (2, 2, 0)
    assert f["recall@1"] == 0.0
    assert f["recall@3"] == approx(1.0)
    assert f["mrr@10"] == approx((1 / 2 + 1 / 3) / 2)
    assert f["citation_precision"] == approx(0.5)                  # PA good, X1 bad
    assert f["citation_recall"] == approx(0.5)                     # QA yes, QD no
    assert f["support_rate"] == approx(0.5)                        # 1 of 2 sentences
    assert f["answer_f1"] == approx((2 / 3 + 0) / 2)
    assert f["false_abstention_rate"] == approx(0.5)
    assert f["abstention_rate"] == 0.0                             # no unanswerable rows: 0 by definition
    assert f["latency_p50_s"] == approx(0.2)                       # [0.1, 0.3]
    assert f["latency_p95_s"] == approx(0.29)                      # 0.1 + 0.95 * 0.2

    li = by_kind["list"]                                            # a2
    assert li["recall@1"] == approx(0.5)
    assert li["recall@3"] == approx(1.0)
    assert li["mrr@10"] == approx(1.0)
    assert li["citation_precision"] == approx(1.0)
    assert li["citation_recall"] == approx(0.5)
    assert li["support_rate"] == approx(1.0)
    assert li["answer_f1"] == approx(2 / 3)
    assert li["false_abstention_rate"] == 0.0

    u = by_kind["unanswerable"]                                     # u1 and u2
    assert (u["questions"], u["answerable"], u["unanswerable"]) == (2, 0, 2)
    assert u["recall@5"] == u["mrr@10"] == u["citation_recall"] == u["answer_f1"] == 0.0
    assert u["citation_precision"] == 0.0                          # u2's citation covers no quote
    assert u["support_rate"] == approx(1.0)                        # u2: 1 of 1 sentence supported
    assert u["abstention_rate"] == approx(0.5)
    assert u["false_abstention_rate"] == 0.0

    # The overall block is _score over all rows of the configuration.
    assert summary["A"]["overall"] == _score(_rows(), {i.id: i for i in ITEMS})


def test_summarise_keeps_configurations_apart_in_first_seen_order() -> None:
    # Configuration "B" abstains on everything: nothing cited, no sentences.
    b_rows = [_row(r["id"], r["retrieved"], [], NO, True, {}, 2.0, "B") for r in _rows()]
    rows = [r for pair in zip(b_rows, _rows("A")) for r in pair]    # interleaved, B first
    summary = summarise(rows, ITEMS)
    assert list(summary) == ["B", "A"]
    b = summary["B"]["overall"]
    assert b["questions"] == 5
    assert b["recall@1"] == approx(1 / 6)                          # retrieval is the same as A's
    assert b["citation_precision"] == 0.0                          # nothing cited
    assert b["citation_recall"] == 0.0
    assert b["support_rate"] == 0.0                                # no sentences
    assert b["answer_f1"] == 0.0
    assert b["abstention_rate"] == 1.0
    assert b["false_abstention_rate"] == 1.0
    assert b["latency_p50_s"] == b["latency_p95_s"] == approx(2.0)
    assert summary["A"]["overall"]["citation_precision"] == approx(0.5)
    assert summary["A"]["overall"]["latency_p95_s"] == approx(0.88)
