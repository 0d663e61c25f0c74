"""Run the chat UI: ``python app.py``, then open http://127.0.0.1:7860.

Settings come from ``RAG_*`` environment variables (see rag/config.py); the
address from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.  The default index is
checked against the corpus folder first and rebuilt, with a message, when stale.
"""

from __future__ import annotations

import logging
import sys

from rag.assistant import Assistant
from rag.config import Settings
from rag.errors import RagError
from rag.ui import serve


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        assistant = Assistant.open(Settings())
    except (RagError, ValueError, OSError) as exc:
        sys.exit(f"error: {exc}")
    serve(assistant)


if __name__ == "__main__":
    main()
