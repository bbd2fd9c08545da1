"""A local HTTP server for tests of clients (no network: it listens on 127.0.0.1 only), and proxy variables cleared
so that requests to it are not sent to a proxy."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

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
