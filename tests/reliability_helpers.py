"""Helpers shared by the reliability and security suites (not a test module).

- :class:`AppProcess`: ``python app.py`` in a subprocess on a free port over a tmp
  corpus and index (the approach of test_browser.py), stopped by PID;
- :class:`FakeLLMServer`: a tiny OpenAI-compatible HTTP server on 127.0.0.1 that
  misbehaves on purpose (garbage JSON, no choices, empty content, HTTP 500, a
  trickle of keep-alives) or streams a chosen reply;
- :class:`SilentServer`: accepts TCP connections and never answers;
- :func:`closed_port`: a port on 127.0.0.1 that nothing listens on.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    return free_port()


def writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:  # the repo's seeds are read-only
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


# -- the app in a subprocess -------------------------------------------------------------


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class AppProcess:
    """`python app.py` over ``corpus`` with its index in ``base/index``; use as a context manager."""

    def __init__(self, base: Path, corpus: Path, env: dict[str, str] | None = None) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = base / f"app-{self.port}.log"
        self.env = dict(os.environ)
        for name in ("OPENAI_API_KEY", "RAG_LLM__OPENAI_API_KEY", "RAG_LLM__OPENAI_BASE_URL"):
            self.env.pop(name, None)
        self.env.update({
            "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "RAG_PATHS__CORPUS_DIR": str(corpus), "RAG_PATHS__INDEX_DIR": str(base / "index"),
            "RAG_LLM__BACKEND": "extractive",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAG_SHOW_PROGRESS": "0",
        })
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "AppProcess":
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _serving(self.url):
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"app.py did not serve within {START_TIMEOUT_S}s:\n{self.log()}")
            time.sleep(0.5)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- fake LLM endpoints -------------------------------------------------------------------


def sse_chunk(content: str | None, *, choices: bool = True, finish: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` server-sent event."""
    delta: dict[str, Any] = {"role": "assistant"}
    if content is not None:
        delta["content"] = content
    payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
               "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    return f"data: {json.dumps(payload)}\n\n".encode()


class FakeLLMServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers every chat request in one ``mode``.

    Modes: ``reply`` (streams ``reply`` in small pieces), ``invalid_json`` (200 with a body
    that is not JSON), ``sse_garbage`` (an event whose data is not JSON), ``empty_choices``,
    ``empty_content``, ``http_500``, ``trickle`` (headers, then an SSE comment every
    0.3 s, forever: each read succeeds, no token ever comes).
    """

    def __init__(self, mode: str, reply: str = "") -> None:
        self.mode = mode
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - /v1/models for clients that probe
                self._send(200, "application/json", json.dumps({"object": "list", "data": []}).encode())

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    server.requests.append(json.loads(body or b"{}"))
                except ValueError:
                    server.requests.append({"raw": body.decode(errors="replace")})
                mode = server.mode
                if mode == "invalid_json":
                    self._send(200, "application/json", b"{this is not json at all")
                elif mode == "http_500":
                    self._send(500, "application/json",
                               json.dumps({"error": {"message": "internal failure", "type": "server_error"}}).encode())
                elif mode == "sse_garbage":
                    self._send(200, "text/event-stream", b"data: {not json\n\ndata: [DONE]\n\n")
                elif mode == "empty_choices":
                    self._send(200, "text/event-stream", sse_chunk(None, choices=False) + b"data: [DONE]\n\n")
                elif mode == "empty_content":
                    self._send(200, "text/event-stream",
                               sse_chunk("") + sse_chunk(None, finish="stop") + b"data: [DONE]\n\n")
                elif mode == "reply":
                    text = server.reply
                    pieces = [text[i:i + 12] for i in range(0, len(text), 12)] or [""]
                    data = b"".join(sse_chunk(p) for p in pieces) + sse_chunk(None, finish="stop")
                    self._send(200, "text/event-stream", data + b"data: [DONE]\n\n")
                elif mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        while not server._stop.is_set():
                            line = b": keep-alive\n\n"
                            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                            self.wfile.flush()
                            time.sleep(0.3)
                    except OSError:
                        pass
                    self.close_connection = True
                else:  # pragma: no cover - a typo in a test
                    self._send(400, "text/plain", f"unknown mode {mode}".encode())

            def _send(self, status: int, ctype: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts connections on 127.0.0.1 and never sends a byte (until closed)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.accepted = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.accepted += 1
                self.request.settimeout(0.2)
                while not outer._stop.is_set():
                    try:
                        if not self.request.recv(65536):
                            return  # the client gave up
                    except TimeoutError:
                        continue
                    except OSError:
                        return

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
