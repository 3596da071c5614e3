"""A loopback HTTP server answering each path with fixed bytes and extra headers (X-Robots-Tag,
redirect and address-guard tests)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HeaderServer:
    """`routes`: path → (body, [(header, value), ...]) or (body, headers, status); a header may
    repeat; the status is 200 unless given (e.g. 302 with a Location header). Unknown paths: 404.
    `hits`: requests per path; `request_headers`: the last request's headers per path."""

    def __init__(self, routes: dict[str, tuple]) -> None:
        routes = dict(routes)
        hits: dict[str, int] = {}
        self.hits = hits
        request_headers: dict[str, dict[str, str]] = {}
        self.request_headers = request_headers

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                hits[self.path] = hits.get(self.path, 0) + 1
                request_headers[self.path] = dict(self.headers.items())
                body, headers, *status = routes.get(self.path, (b"not found", [], 404))
                self.send_response(status[0] if status else 200)
                self.send_header("Content-Type", "image/jpeg" if self.path in routes else "text/html")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def url(self, path: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> "HeaderServer":
        return self

    def __exit__(self, *_: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
