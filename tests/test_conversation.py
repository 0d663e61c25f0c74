"""Conversations: follow-ups searched as standalone questions; saved conversations whose
citations are re-anchored after the documents are edited and re-indexed; Markdown export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.anchoring import IndexedDocument, find_quote, reanchor
from rag.assistant import Assistant
from rag.conversation import FORMAT, Conversation, ConversationFileError
from rag.followup import rewrite
from rag.types import Chunk, Citation

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def seeds_assistant(seed_index, embedder) -> Assistant:
    _, index_dir, _ = seed_index
    return Assistant(index_dir, "extractive", embedder=embedder)


def test_follow_up_is_answered_with_the_previous_turn(seeds_assistant: Assistant) -> None:
    conversation = seeds_assistant.conversation()
    first = conversation.ask("What is NATO's Defence Production Action Plan?")
    assert not first.abstained and first.searched == first.question
    assert any("Defence Production Action Plan" in c.quote for c in first.citations)

    # Asked alone, the follow-up names nothing to search for.
    alone = seeds_assistant.ask("When was it agreed?")
    follow = conversation.ask("When was it agreed?")
    assert follow.question == "When was it agreed?"
    assert follow.searched != follow.question and "Defence Production Action Plan" in follow.searched
    assert not follow.abstained and follow.citations
    assert "2023" in follow.text and any("2023" in c.quote for c in follow.citations)
    assert alone.abstained or "2023" not in alone.text
    assert [t.question for t in conversation.turns] == ["What is NATO's Defence Production Action Plan?",
                                                        "When was it agreed?"]


def test_standalone_question_is_searched_as_asked(seeds_assistant: Assistant) -> None:
    conversation = seeds_assistant.conversation()
    conversation.ask("What is NATO's Defence Production Action Plan?")
    q = "Which rule did the report follow so that no comments are attributed to individuals?"
    answer = conversation.ask(q)
    assert answer.searched == q
    assert any("Chatham House" in c.quote for c in answer.citations)


@pytest.mark.parametrize(("previous", "question", "carried"), [
    ("What does the --num-callers option of Valgrind control?", "What is its default value?", "--num-callers"),
    ("How many frigates does Australia plan to buy?", "What about Canada?", "frigates"),
    ("What does apt-get do?", "What does this command print?", "apt-get"),
    ("Which licence covers zlib?", "Why?", "zlib"),
])
def test_rewrite_carries_the_subject(previous: str, question: str, carried: str) -> None:
    r = rewrite(question, previous)
    assert r.rewritten and carried in r.standalone, r


def test_what_about_replaces_the_name_asked_about() -> None:
    r = rewrite("What about Canada?", "How many frigates does Australia plan to buy?")
    assert r.standalone == "How many frigates does Canada plan to buy?"


@pytest.mark.parametrize("question", [
    "Can users change their password?",
    "How long does it take to build R from source?",
    "Is there a limit on file size in bzip2?",
    "What is Debian?",
    "Which rule says that members must pay dues every year?",
])
def test_rewrite_leaves_standalone_questions(question: str) -> None:
    r = rewrite(question, "What does the GPL require of distributors?")
    assert not r.rewritten and r.standalone == question, r
    assert not rewrite("When was it agreed?").rewritten  # nothing before it: nothing to carry


# -- re-anchoring ----------------------------------------------------------------------------


def _doc(text: str, digest: str = "h2") -> IndexedDocument:
    return IndexedDocument("a.txt", digest, text, ((1, 0, len(text)),))


def _citation(text: str, quote: str) -> Citation:
    start = text.index(quote)
    return Citation(1, "c", "a.txt", "A", 1, start, start + len(quote), quote, 0.9, "h1")


def test_reanchor_statuses() -> None:
    old = "Intro line.\n\nThe pump runs at 40 litres a minute. It was installed in 2019.\n"
    quote = "The pump runs at 40 litres a minute."
    cit = _citation(old, quote)
    assert reanchor(cit, _doc(old, "h1")).status == "current"

    inserted = "Intro line.\n\nA new paragraph that says nothing else.\n\n" + old[len("Intro line.\n\n"):]
    moved = reanchor(cit, _doc(inserted))
    assert moved.status == "moved" and inserted[moved.char_start:moved.char_end] == quote
    assert moved.char_start > cit.char_start and moved.doc_hash == "h2"

    rewrapped = old.replace("runs at 40", "runs at\n  40")
    tolerant = reanchor(cit, _doc(rewrapped))
    assert tolerant.status == "moved"
    assert " ".join(rewrapped[tolerant.char_start:tolerant.char_end].split()) == quote

    hyphenated = old.replace("litres", "li-\ntres")
    assert reanchor(cit, _doc(hyphenated)).status == "moved"

    edited = old.replace("40 litres", "45 litres")
    changed = reanchor(cit, _doc(edited))
    assert changed.status == "changed" and changed.char_start == cit.char_start

    assert reanchor(cit, None).status == "removed"


def test_find_quote_prefers_the_occurrence_nearest_the_old_offset() -> None:
    text = "Repeat me. " * 3
    assert find_quote(text, "Repeat me.", around=12) == (11, 21)
    assert find_quote(text, "   ") is None


def test_indexed_document_is_rebuilt_from_overlapping_chunks() -> None:
    text = "abcdefghij klmnop"
    chunks = [Chunk("1", "d", "a.txt", "A", text[0:8], 0, 8, 1, 1), Chunk("2", "d", "a.txt", "A", text[5:17], 5, 17, 1, 1)]
    assert IndexedDocument.from_chunks("a.txt", "h", chunks).text == text


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    (folder / "pumps.txt").write_text(
        "Pump station report\n\n"
        "The north station has three pumps. The main pump runs at 40 litres a minute and was installed in 2019 "
        "by the county water board.\n\n"
        "Maintenance happens every spring, when the filters are replaced and the seals are checked.\n",
        encoding="utf-8")
    (folder / "roads.txt").write_text(
        "Road works report\n\nThe bridge on the east road was resurfaced in 2021 at a cost of 2 million dollars.\n",
        encoding="utf-8")
    return folder


def test_saved_conversation_survives_edits_and_reindexing(tmp_path: Path, embedder) -> None:
    folder = _corpus(tmp_path / "docs")
    from rag.indexing import index_folder

    index_dir = tmp_path / "index"
    index_folder(folder, index_dir, embedder, show_progress=False)
    assistant = Assistant(index_dir, "extractive", embedder=embedder)
    conversation = assistant.conversation()
    answer = conversation.ask("How many litres a minute does the main pump run at?")
    assert not answer.abstained and answer.citations
    cited = answer.citations[0]
    assert cited.source == "pumps.txt" and "40 litres" in cited.quote and cited.doc_hash
    conversation.ask("When was the east road bridge resurfaced?")
    path = conversation.save(tmp_path / "saved" / "talk.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == FORMAT and len(data["turns"]) == 2

    # Unchanged corpus: every citation is current.
    restored = assistant.load_conversation(path)
    assert [c.status for t in restored.turns for c in t.citations] == ["current"] * sum(
        len(t.citations) for t in conversation.turns)
    assert [t.text for t in restored.turns] == [t.text for t in conversation.turns]

    # A paragraph inserted before the cited sentence: the quote moved.
    doc = folder / "pumps.txt"
    text = doc.read_text(encoding="utf-8")
    doc.write_text(text.replace("Pump station report\n\n",
                                "Pump station report\n\nThis report was revised after the spring inspection.\n\n"),
                   encoding="utf-8")
    assistant.index(folder)
    moved = assistant.load_conversation(path).turns[0].citations[0]
    assert moved.status == "moved" and moved.char_start > cited.char_start
    new_text = assistant.indexed_document("pumps.txt").text
    assert new_text[moved.char_start:moved.char_end] == cited.quote
    road = assistant.load_conversation(path).turns[1].citations
    assert road and all(c.status == "current" for c in road)  # the other document did not change

    # The cited sentence deleted: changed.  The other document deleted: removed.
    doc.write_text(doc.read_text(encoding="utf-8").replace(
        "The main pump runs at 40 litres a minute and was installed in 2019 by the county water board.", ""),
        encoding="utf-8")
    (folder / "roads.txt").unlink()
    assistant.index(folder)
    again = assistant.load_conversation(path)
    assert again.turns[0].citations[0].status == "changed"
    assert all(c.status == "removed" for c in again.turns[1].citations)
    markdown = again.to_markdown()
    assert "this quote is no longer in it" in markdown and "no longer in the index" in markdown

    # A restored conversation goes on: its last standalone question is the context.
    follow = again.standalone("When was it built?")
    assert follow.rewritten and "bridge" in follow.standalone


def test_markdown_export_lists_questions_answers_and_sources(seeds_assistant: Assistant) -> None:
    conversation = seeds_assistant.conversation()
    conversation.ask("What is NATO's Defence Production Action Plan?")
    conversation.ask("When was it agreed?")
    md = conversation.to_markdown()
    assert md.startswith("# Conversation")
    assert "## 1. What is NATO's Defence Production Action Plan?" in md and "## 2. When was it agreed?" in md
    assert "*Searched for: When was it agreed? (" in md
    for turn in conversation.turns:
        for c in turn.citations:
            assert f'"{c.quote}"' in md and c.title in md


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "other", "turns": []}),
                                     json.dumps({"format": FORMAT, "turns": [{"question": "q"}]})])
def test_bad_conversation_files_get_a_clear_error(tmp_path: Path, seeds_assistant: Assistant, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConversationFileError, match=re.escape(str(path))):
        Conversation.load(seeds_assistant, path)
    with pytest.raises(ConversationFileError, match="no saved conversation"):
        Conversation.load(seeds_assistant, tmp_path / "missing.json")


def test_followup_set_is_built_from_checked_questions() -> None:
    """Every item comes from an answerable collection question of its corpus; its evidence is
    in its documents (on the page it gives), and its split is that of the documents it is about."""
    from rag.collection import load_collection
    from rag.conversation_eval import FOLLOWUPS, is_followup_set, load_followups
    from rag.evaluation import QAItem, dataset_errors

    assert is_followup_set(FOLLOWUPS) and not is_followup_set(ROOT / "eval" / "dev.jsonl")
    items = load_followups(FOLLOWUPS)
    corpora = {c.name: c for c in load_collection()}
    for item in items:
        corpus = corpora[item["corpus"]]
        source = {q.id: q for q in corpus.items()}[item["from"]]
        assert source.answerable, item["id"]
        asked = QAItem(item["id"], item["question"], None, True, "followup", item["evidence"], item["doc"])
        assert item["evidence"] and dataset_errors([asked], corpus.folder) == [], item["id"]
        assert corpus.split_of(asked) == item["split"], item["id"]
        assert item["turns"] and item["question"].strip()
    follow = [i for i in items if i["followup"]]
    assert len(follow) >= 40 and len(items) - len(follow) >= 20
    assert {i["split"] for i in follow} == {"tune", "test"} and len({i["corpus"] for i in items}) >= 6


def test_question_with_its_own_words_is_rewritten_only_on_the_same_topic() -> None:
    from rag.followup import MIN_TOPIC_SIMILARITY

    previous = "What does Cachegrind's --branch-sim option do?"
    question = "By how much does enabling it slow the simulation of every program down?"
    assert not rewrite(question, previous).rewritten  # similarity unknown: names enough of its own
    assert not rewrite(question, previous, similarity=MIN_TOPIC_SIMILARITY - 0.01).rewritten
    same = rewrite(question, previous, similarity=MIN_TOPIC_SIMILARITY)
    assert same.rewritten and "--branch-sim" in same.standalone and "same" in same.reason
    # No referring word: never rewritten for being on the same topic.
    assert not rewrite("How much does branch simulation slow Cachegrind down?", previous, similarity=0.9).rewritten


def test_a_fragment_after_a_preposition_is_a_follow_up_and_a_full_question_is_not() -> None:
    previous = "Is the tabSize option of readline.createInterface() supported on every platform?"
    fragment = rewrite("Since which Node.js release?", previous)
    assert fragment.rewritten and "tabSize" in fragment.standalone and "fragment" in fragment.reason
    # The same opening with a verb of its own stands on its own, and so does a short question
    # that opens with its question word.
    assert not rewrite("Since which Node.js release does zlib compress with Brotli?", previous).rewritten
    assert not rewrite("In which year was the board created?", previous).rewritten
    assert not rewrite("Who wrote the GPL?", previous).rewritten
    assert not rewrite("Since which Node.js release?").rewritten  # nothing before it
