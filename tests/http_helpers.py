"""A local HTTP server for tests of clients (no network: it listens on 127.0.0.1 only), proxy variables cleared
so that requests to it are not sent to a proxy, and a fake OpenAI-compatible chat server that answers with a plan
(the language-model tests of the web UI and the REST service)."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@contextmanager
def local_server(handler):
    """Serves `handler` (a BaseHTTPRequestHandler class) on a free port of 127.0.0.1; `server.seen` is a list the
    handler may append requests to."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def clear_proxies(monkeypatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def send_json(handler: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
    """Sends `data` (JSON bytes) with `status` from a request handler."""
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def plan_json(duration_s: float) -> dict:
    """A bell at 0.5 s on screen and rain over the whole clip off screen (schema foleyflow-cot/1)."""
    return {"schema": "foleyflow-cot/1", "duration_s": duration_s, "scene": {"room": "hall"},
            "sources": [{"id": "bell", "class": "bell", "on_screen": True, "events": [0.5], "pan": -0.5},
                        {"id": "rain", "class": "rain", "on_screen": False, "events": [[0, 1.0]]}]}


class FakeChat(BaseHTTPRequestHandler):
    """A chat-completions endpoint: /good/...: plan_json(1.5) as the reply; /bad/...: a reply whose content is not
    JSON (and echoes the key it got); anything else: HTTP 401 echoing the key. Requests go to `server.seen`."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.seen.append({"auth": self.headers.get("authorization"), "body": body})
        if self.path.startswith(("/good/", "/bad/")):
            content = (json.dumps(plan_json(1.5)) if self.path.startswith("/good/")
                       else f"Sorry, I cannot do that\nwith {self.headers.get('authorization')}")
            status = 200
            data = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
        else:
            status, data = 401, {"error": {"message": f"bad key {self.headers.get('authorization')}"}}
        send_json(self, status, json.dumps(data).encode())


@pytest.fixture(scope="module")
def fake():
    """A FakeChat server for a test module (import this fixture by name)."""
    with local_server(FakeChat) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """No proxy between the tests and their local servers (import this fixture by name: autouse in that module)."""
    clear_proxies(monkeypatch)
