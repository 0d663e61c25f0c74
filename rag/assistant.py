"""The assistant: retrieve, decide, generate, check citations, answer.

>>> from rag import Assistant
>>> assistant = Assistant.from_settings()
>>> answer = assistant.ask("Which rule did the report follow on attribution?")
>>> print(answer.text, [c.quote for c in answer.citations])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rag.abstention import Decision, decide
from rag.citations import SupportChecker, compose
from rag.config import PathSettings, Settings
from rag.embeddings import Embedder, embedder_for
from rag.errors import GenerationError, QuestionError
from rag.evidence import EvidenceRanker
from rag.generators import ExtractiveGenerator, GenerationRequest, Generator, get_generator
from rag.indexing import IndexReport, index_folder, stale_reason
from rag.prompts import NO_ANSWER, cut_scaffolding
from rag.retrieval import Retriever
from rag.store import open_store
from rag.types import Answer, Citation, Hit

if TYPE_CHECKING:
    from rag.anchoring import IndexedDocument
    from rag.conversation import Conversation

log = logging.getLogger(__name__)

#: Longest question accepted, in characters: a product limit, not a tuned value.  Ten times the
#: longest question of the QA collection (186 characters), room for a pasted paragraph, while a
#: pasted document gets a clear error instead of a slow, truncated embedding.
MAX_QUESTION_CHARS = 2000


def check_question(question: str) -> str:
    """The question stripped, or :class:`QuestionError` if empty or too long."""
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty; type a question about the documents")
    q = " ".join(question.split())
    if len(q) > MAX_QUESTION_CHARS:
        raise QuestionError(
            f"the question is {len(q):,} characters long; the limit is {MAX_QUESTION_CHARS:,}. Ask something shorter"
        )
    return q


class Assistant:
    """Answers questions over an index with cited passages, or says it cannot."""

    def __init__(
        self,
        index_dir: str | Path,
        generator: Generator | str | None = None,
        *,
        embedder: Embedder | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.index_dir = Path(index_dir)
        self.embedder = embedder or embedder_for(self.settings.embedding)
        store = open_store(self.index_dir, model_id=self.embedder.model_id, dim=self.embedder.dim)
        self.retriever = Retriever(store, self.embedder)
        guard = self.settings.guard_documents
        self.ranker = EvidenceRanker(self.embedder, guard=guard)
        self.ranker.embed.use(store.sentences)
        self.checker = SupportChecker(self.ranker.embed, guard=guard)
        self._generators: dict[str, Generator] = {}
        self._extractive = ExtractiveGenerator()
        self._gen_lock = threading.Lock()
        self._index_lock = threading.RLock()
        if generator is None:
            self.backend = self.settings.llm.backend
        elif isinstance(generator, str):
            self.backend = generator
        else:
            self.backend = generator.name
            self._generators[generator.name] = generator

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        generator: Generator | str | None = None,
        corpus_dir: str | Path | None = None,
        show_progress: bool | None = None,
    ) -> "Assistant":
        """An assistant over ``settings.paths.index_dir``.

        With ``corpus_dir``, the index is first checked against that folder and the
        embedder, and rebuilt (with a log message) when it does not match.
        """
        settings = settings or Settings()
        embedder = embedder_for(settings.embedding)
        if corpus_dir is not None:
            reason = stale_reason(Path(corpus_dir), settings.paths.index_dir, embedder,
                                  chunk_size=settings.chunking.chunk_size,
                                  chunk_overlap=settings.chunking.chunk_overlap)
            if reason:
                log.warning("rebuilding the index at %s: %s", settings.paths.index_dir, reason)
                index_folder(corpus_dir, settings.paths.index_dir, embedder,
                             chunk_size=settings.chunking.chunk_size,
                             chunk_overlap=settings.chunking.chunk_overlap,
                             show_progress=show_progress if show_progress is not None else settings.show_progress,
                             store=settings.store.target())
        return cls(settings.paths.index_dir, generator or settings.llm.backend,
                   embedder=embedder, settings=settings)

    @classmethod
    def open(cls, settings: Settings | None = None, *, generator: Generator | str | None = None) -> "Assistant":
        """The assistant the CLI and the UI serve.

        The default index (and any index whose corpus folder is set explicitly) is kept
        fresh against the corpus folder: built when missing, rebuilt with a message when
        the files or the embedder changed.  Any other index is used as it is.
        """
        settings = settings or Settings()
        paths = settings.paths
        default_index = paths.index_dir.resolve() == PathSettings().index_dir.resolve()
        keep_fresh = (default_index or "corpus_dir" in paths.model_fields_set) and paths.corpus_dir.is_dir()
        return cls.from_settings(settings, generator=generator,
                                 corpus_dir=paths.corpus_dir if keep_fresh else None)

    # -- backends ------------------------------------------------------------

    def generator(self, name: str | None = None) -> Generator:
        """The generator called ``name`` (default: this assistant's backend), created once."""
        name = name or self.backend
        with self._gen_lock:
            if name not in self._generators:
                self._generators[name] = get_generator(name, self.settings.llm, self.settings.paths)
            return self._generators[name]

    # -- the pipeline ---------------------------------------------------------

    def retrieve(self, question: str, k: int | None = None, mode: str | None = None) -> list[Hit]:
        """The ``k`` passages that best match ``question``."""
        q = check_question(question)
        return self.retriever.search(q, k or self.settings.retrieval.k, mode or self.settings.retrieval.mode)

    def ask(self, question: str, k: int | None = None, backend: str | None = None,
            search_for: str | None = None) -> Answer:
        """Answer ``question`` with citations, or abstain with the related passages.

        ``search_for`` replaces the question for retrieval, evidence and generation (a
        follow-up rewritten to stand on its own: see :meth:`conversation`).
        """
        answer: Answer | None = None
        for item in self.stream(question, k=k, backend=backend, search_for=search_for):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(self, question: str, k: int | None = None, backend: str | None = None,
               search_for: str | None = None) -> Iterator[str | Answer]:
        """Yield the answer's text deltas as they are produced, then the checked :class:`Answer`.

        The final answer may differ from the streamed text: unsupported sentences are
        removed and markers renumbered by the citation check.
        """
        t0 = time.perf_counter()
        asked = check_question(question)
        q = check_question(search_for) if search_for is not None else asked
        name = backend or self.backend
        timings: dict[str, float] = {}
        hits = self.retriever.search(q, k or self.settings.retrieval.k, self.settings.retrieval.mode)
        candidates = self.ranker.rank(q, hits)
        timings["retrieve_s"] = time.perf_counter() - t0

        decision = decide(q, candidates, self._in_corpus)
        if not decision.answerable:
            timings["total_s"] = time.perf_counter() - t0
            yield NO_ANSWER
            yield self._abstain(asked, q, hits, name, timings, decision)
            return

        request = GenerationRequest(q, hits, candidates, guard=self.settings.guard_documents)
        notice = ""
        t1 = time.perf_counter()
        used = name
        try:
            generator = self.generator(name)
            parts: list[str] = []
            for delta in generator.stream(request):
                parts.append(delta)
                yield delta
            raw = cut_scaffolding("".join(parts))
            if not raw.strip():
                raise GenerationError("the model returned an empty answer")
        except Exception as exc:  # noqa: BLE001 - no backend failure may crash an answer
            log.warning("backend %s failed, falling back to extractive: %s", name, exc)
            notice = f"The {name} backend failed ({exc}); this answer was composed extractively instead."
            used = "extractive"
            raw = "".join(self._extractive.stream(request))
            yield "\n\n" + raw
        timings["generate_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        checked = self.checker.check(raw, hits)
        text, citations = compose(checked, hits, self._page_of)
        checks = {"sentences": len(checked), "supported": sum(c.passage is not None for c in checked),
                  "recited": sum(c.recited for c in checked)}
        if not citations and used != "extractive":
            # The passages hold an answer (the decision above said so) but the model's text
            # could not be verified: show verifiable quotes rather than claim there is none.
            notice = (f"The {used} answer could not be verified against the passages, "
                      "so the best-supported sentences are quoted instead.")
            used = "extractive"
            extractive = "".join(self._extractive.stream(request))
            yield "\n\n" + extractive
            text, citations = compose(self.checker.check(extractive, hits), hits, self._page_of)
        timings["check_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        if not citations:
            answer = self._abstain(asked, q, hits, used, timings,
                                   Decision(False, "no sentence of the answer was supported"), notice)
            answer.checks = checks
            yield answer
            return
        yield Answer(asked, text, self._stamp(citations), hits, False, used, timings, notice, checks, q)

    def conversation(self) -> "Conversation":
        """A new conversation: follow-up questions are answered with the turns before them."""
        from rag.conversation import Conversation

        return Conversation(self)

    def load_conversation(self, path: str | Path) -> "Conversation":
        """A conversation saved with :meth:`Conversation.save`, its citations re-anchored in
        the documents as they are indexed now (see :mod:`rag.anchoring`)."""
        from rag.conversation import Conversation

        return Conversation.load(self, path)

    def _abstain(self, asked: str, q: str, hits: list[Hit], backend: str, timings: dict[str, float],
                 decision: Decision, notice: str = "") -> Answer:
        return Answer(asked, NO_ANSWER, [], hits, True, backend, timings,
                      notice or f"Not answered: {decision.reason}.", searched=q)

    def _stamp(self, citations: list[Citation]) -> list[Citation]:
        """Citations with the content hash of their document, for re-anchoring later."""
        files = self.retriever.store.manifest.get("files", {})
        return [replace(c, doc_hash=files.get(c.source, {}).get("hash", "")) for c in citations]

    def _in_corpus(self, term: str) -> bool:
        return self.retriever.store.has_term(term)

    def _page_of(self, source: str, offset: int) -> int:
        entry = self.retriever.store.manifest.get("files", {}).get(source, {})
        for page, start, end in entry.get("page_spans", []):
            if start <= offset < end:
                return int(page)
        return 1

    # -- the index ------------------------------------------------------------

    def reload(self) -> None:
        """Serve from the index on disk now (after another process rebuilt it)."""
        store = open_store(self.index_dir, model_id=self.embedder.model_id, dim=self.embedder.dim)
        self.retriever.swap(store)
        self.ranker.embed.use(store.sentences)

    def index(self, folder: str | Path, *, strict: bool = False, show_progress: bool | None = False) -> IndexReport:
        """Update this assistant's index from ``folder`` and serve the result atomically."""
        with self._index_lock:
            report = index_folder(folder, self.index_dir, self.embedder,
                                  chunk_size=self.settings.chunking.chunk_size,
                                  chunk_overlap=self.settings.chunking.chunk_overlap,
                                  strict=strict, show_progress=show_progress)
            self.reload()
            return report

    def add_files(self, files: list[str | Path], corpus_dir: str | Path | None = None,
                  names: list[str] | None = None) -> IndexReport:
        """Copy files into the corpus folder under safe names and index them.

        Every file is checked first; if any fails to load, nothing is copied or
        indexed and the :class:`~rag.errors.LoaderError` names the file.
        """
        from rag.errors import LoaderError
        from rag.uploads import add_to_corpus

        corpus = Path(corpus_dir) if corpus_dir else self.settings.paths.corpus_dir
        with self._index_lock:
            added: list[Path] = []
            try:
                for i, f in enumerate(files):
                    added.append(add_to_corpus(f, corpus, names[i] if names else None,
                                               max_bytes=int(self.settings.max_upload_mb * 1e6)))
            except (LoaderError, ValueError, OSError):
                for path in added:
                    path.unlink(missing_ok=True)
                raise
        return self.index(corpus)

    def indexed_document(self, source: str) -> "IndexedDocument | None":
        """The text of ``source`` as the index holds it (all pages), or None if not indexed."""
        from rag.anchoring import IndexedDocument

        store = self.retriever.store
        entry = store.manifest.get("files", {}).get(source)
        if entry is None:
            return None
        chunks = store.chunks_by_id(list(entry.get("chunk_ids", [])))
        return IndexedDocument.from_chunks(source, entry.get("hash", ""), chunks, entry.get("page_spans"),
                                           entry.get("title", source))

    def documents(self) -> list[dict[str, object]]:
        """The indexed documents: source, title, pages, chunks."""
        files = self.retriever.store.manifest.get("files", {})
        return [{"source": name, "title": f.get("title", name), "pages": f.get("pages", 1),
                 "chunks": len(f.get("chunk_ids", []))} for name, f in sorted(files.items())]
