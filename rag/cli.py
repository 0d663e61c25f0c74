"""The ``rag`` command: index, search, ask, eval, serve.  No business logic lives here."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from rag.errors import RagError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cited question answering over a folder of reports.")
_state = {"debug": False}

IndexDirOpt = Annotated[Optional[Path], typer.Option("--index-dir", help="Index folder (default: index/).")]
KOpt = Annotated[Optional[int], typer.Option("-k", "--k", min=1, max=50, help="Passages to retrieve.")]


def _fail(exc: BaseException) -> NoReturn:
    if _state["debug"]:
        raise exc
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2 if isinstance(exc, RagError) else 1)


def _settings(index_dir: Path | None = None, corpus_dir: Path | None = None):  # noqa: ANN202
    from rag.config import Settings

    settings = Settings()
    if index_dir is not None:
        settings.paths.index_dir = index_dir
    if corpus_dir is not None:
        settings.paths.corpus_dir = corpus_dir
    return settings


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log progress details.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command("index")
def index_cmd(
    folder: Annotated[Optional[Path], typer.Argument(help="Folder of documents (default: seeds/).")] = None,
    index_dir: IndexDirOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail if any file is skipped.")] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Re-embed everything.")] = False,
    chunk_size: Annotated[Optional[int], typer.Option(help="Largest chunk in characters.")] = None,
    chunk_overlap: Annotated[Optional[int], typer.Option(help="Overlap in characters.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Parse and embed with Ray Data on a local Ray runtime "
                                      "(needs the 'scale' extra).")] = False,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", help="Parse and embed on this running Ray cluster (host:6379 or ray://host:10001).")] = None,
    store: Annotated[Optional[str], typer.Option(
        "--store", help="faiss or milvus (needs the 'scale' extra); default: where the index is, else faiss.")] = None,
    store_uri: Annotated[Optional[str], typer.Option(
        "--store-uri", help="For milvus: a milvus-lite file (a path relative to the index folder; default milvus.db) "
        "or a server, http://host:19530.")] = None,
) -> None:
    """Build or update the index of a folder (unchanged files are not re-embedded)."""
    workers = None
    try:
        from rag.embeddings import embedder_for
        from rag.indexing import index_folder

        s = _settings(index_dir, folder)
        if store is not None:
            s.store.backend = store
        if store_uri is not None:
            s.store.uri = store_uri
        target = s.store.target()
        if ray or ray_address:
            from rag.ray_indexing import RayWorkers

            workers = RayWorkers(s.embedding.model, s.embedding.batch_size, s.embedding.backend,
                                 address=ray_address)
        report = index_folder(
            s.paths.corpus_dir, s.paths.index_dir,
            embedder_for(s.embedding),
            chunk_size=chunk_size or s.chunking.chunk_size,
            chunk_overlap=s.chunking.chunk_overlap if chunk_overlap is None else chunk_overlap,
            strict=strict, rebuild=rebuild,
            show_progress=False if no_progress else (None if s.show_progress else False),
            workers=workers, store=target,
        )
    except (RagError, ValueError, OSError) as exc:
        _fail(exc)
    finally:
        if workers is not None:
            workers.close()
    if report.rebuilt_reason:
        typer.echo(f"every file re-read and re-chunked: {report.rebuilt_reason}", err=True)
    typer.echo(report.summary())
    typer.echo(f"index: {s.paths.index_dir}")


@app.command("search")
def search_cmd(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: KOpt = None,
    index_dir: IndexDirOpt = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the passages that best match a question."""
    try:
        from rag.assistant import Assistant

        s = _settings(index_dir)
        assistant = Assistant.open(s, generator="extractive")
        hits = assistant.retrieve(question, k or s.retrieval.k, mode=mode)
    except (RagError, ValueError, OSError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({"hits": [
            {"rank": h.rank, "score": h.score, "chunk_id": h.chunk.id, "source": h.chunk.source,
             "title": h.chunk.title, "page": h.chunk.page_start, "char_start": h.chunk.char_start,
             "char_end": h.chunk.char_end, "text": h.chunk.text}
            for h in hits]}, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for h in hits:
        console.print(f"[bold]{h.rank}.[/bold] {escape(h.chunk.title)} · p. {h.chunk.page_start} "
                      f"· score {h.score:.3f}")
        console.print(escape(h.chunk.text), highlight=False)
        console.print()


@app.command("ask")
def ask_cmd(
    question: Annotated[str, typer.Argument(help="Your question about the documents.")],
    backend: Annotated[Optional[str], typer.Option("--backend", "-b",
                       help="extractive, llama-cpp or openai (default: RAG_LLM__BACKEND or extractive).")] = None,
    k: KOpt = None,
    index_dir: IndexDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Answer as JSON.")] = False,
) -> None:
    """Answer a question with cited passages, or say the documents do not hold the answer."""
    try:
        from rag.assistant import Assistant, check_question

        check_question(question)
        s = _settings(index_dir)
        assistant = Assistant.open(s, generator=backend)
        answer = assistant.ask(question, k=k)
    except (RagError, ValueError, OSError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(escape(answer.text), highlight=False)
    if answer.notice:
        console.print(f"[dim]{escape(answer.notice)}[/dim]")
    if answer.citations:
        console.print("\n[bold]Sources[/bold]")
        for c in answer.citations:
            console.print(f"[{c.marker}] {escape(c.title)}, p. {c.page}: “{escape(c.quote)}”", highlight=False)
    elif answer.passages:
        console.print("\n[bold]Related passages (not cited)[/bold]")
        for h in answer.passages[:3]:
            console.print(f"- {escape(h.chunk.title)}, p. {h.chunk.page_start}: "
                          f"{escape(h.chunk.text[:160])}…", highlight=False)


@app.command("eval")
def eval_cmd(
    qa_file: Annotated[Path, typer.Argument(help="QA set (JSONL), a collection (eval/collection.json) or a "
                                            "follow-up set (eval/followups.jsonl).", exists=True, dir_okay=False)],
    split: Annotated[str, typer.Option("--split", help="For a collection or a follow-up set: the split to score "
                                       "(tune or test).")] = "test",
    backend: Annotated[Optional[list[str]], typer.Option("--backend", "-b",
                       help="Backend to score; repeat to compare several.")] = None,
    k: KOpt = None,
    index_dir: IndexDirOpt = None,
    corpus_dir: Annotated[Optional[Path], typer.Option("--corpus-dir",
                          help="Folder the evidence quotes refer to (default: the folder the index "
                               "was built from).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for results.jsonl, summary.json, report.md.")] = Path("eval-out"),
) -> None:
    """Score retrieval, citation precision/recall and abstention on a QA set or a collection split."""
    try:
        from rich.progress import Progress

        from rag.assistant import Assistant
        from rag.collection import evaluate_collection, is_collection
        from rag.conversation_eval import evaluate_followups, is_followup_set, report
        from rag.evaluation import evaluate

        if is_followup_set(qa_file):
            with Progress(transient=True) as bar:
                task = bar.add_task("evaluating", total=None)
                summary = evaluate_followups(split, qa_file, k=k or 5, out_dir=out,
                                             backend=(backend or ["extractive"])[0],
                                             progress=lambda msg: bar.update(task, description=msg))
            typer.echo(report(summary))
            typer.echo(f"wrote {out / 'results.jsonl'}, {out / 'summary.json'}, {out / 'report.md'}")
            return
        if is_collection(qa_file):
            with Progress(transient=True) as bar:
                task = bar.add_task("evaluating", total=None)
                summary = evaluate_collection(split, backend=(backend or ["extractive"])[0], out_dir=out,
                                              collection=qa_file,
                                              progress=lambda msg: bar.update(task, description=msg))
            typer.echo((out / "report.md").read_text(encoding="utf-8"))
            typer.echo(f"wrote {out / 'results.jsonl'}, {out / 'summary.json'}, {out / 'report.md'}")
            return
        s = _settings(index_dir, corpus_dir)
        assistant = Assistant.open(s)
        with Progress(transient=True, disable=not s.show_progress) as bar:
            task = bar.add_task("evaluating", total=None)
            summary = evaluate(qa_file, assistant, backends=backend or None, k=k, out_dir=out,
                               corpus_dir=corpus_dir,
                               progress=lambda msg: bar.update(task, description=msg))
    except (RagError, ValueError, OSError) as exc:
        _fail(exc)
    typer.echo((out / "report.md").read_text(encoding="utf-8"))
    if summary["dataset_errors"]:
        typer.echo(f"warning: {len(summary['dataset_errors'])} evidence quotes are not in the corpus "
                   "(see report.md); those questions were not scored", err=True)
    typer.echo(f"wrote {out / 'results.jsonl'}, {out / 'summary.json'}, {out / 'report.md'}")


@app.command("train")
def train_cmd(
    out: Annotated[Optional[Path], typer.Option("--out", help="Model file to write (default: the shipped "
                                                "rag/models/answering.json).")] = None,
) -> None:
    """Fit the evidence and answerability models on the tune split of eval/collection.json."""
    try:
        from rag.train import train

        fitted = train(out)
    except (RagError, ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(json.dumps(fitted["fitted"], indent=1))


@app.command("serve")
def serve_cmd(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default 7860).")] = None,
    index_dir: IndexDirOpt = None,
) -> None:
    """Serve the chat UI."""
    try:
        from rag.assistant import Assistant
        from rag.ui import serve

        s = _settings(index_dir)
        assistant = Assistant.open(s)
    except (RagError, ValueError, OSError) as exc:
        _fail(exc)
    serve(assistant, host=host, port=port)


def main() -> None:
    """Entry point of the ``rag`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
