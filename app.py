"""Run the chat UI: ``python app.py``, then open http://127.0.0.1:7860.

Settings come from ``RAG_*`` environment variables (see rag/config.py); the
address from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.  The default index is
checked against the corpus folder first and rebuilt, with a message, when stale.
"""

from __future__ import annotations

import logging
import os
import sys

from rag.assistant import Assistant
from rag.config import PathSettings, Settings
from rag.errors import IndexNotFoundError, RagError
from rag.ui import serve


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings()
    paths = settings.paths
    # Keep the index fresh against the corpus when it is the default index, or when
    # the corpus folder is chosen explicitly too; a custom index is otherwise used as is.
    check = paths.index_dir.resolve() == PathSettings().index_dir.resolve() or "RAG_PATHS__CORPUS_DIR" in os.environ
    corpus = paths.corpus_dir if check and paths.corpus_dir.is_dir() else None
    try:
        try:
            assistant = Assistant.from_settings(settings, corpus_dir=corpus)
        except IndexNotFoundError:
            logging.getLogger("app").warning("no index at %s yet: building it from %s", paths.index_dir,
                                             paths.corpus_dir)
            assistant = Assistant.from_settings(settings, corpus_dir=paths.corpus_dir)
    except (RagError, ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")
    serve(assistant)


if __name__ == "__main__":
    main()
