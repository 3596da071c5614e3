"""A loopback image server with the failure cases of the web, and generated photos to serve.

The server is what `uvd demo`, the tests and the benchmark download from: nothing here ever
leaves 127.0.0.1. It lives in demo/ because the demo needs it; tests import it from here.
"""
from __future__ import annotations

import contextlib
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from uvd import codec

PRIVATE_URL = "http://10.0.0.1/never-contacted.jpg"


def generated_photos(n: int, seed: int = 0, sizes: tuple[int, int] = (320, 1280), quality: int = 90) -> list[bytes]:
    """n JPEGs of random sizes: smooth gradients plus noise, so they compress like photos do."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
        base = rng.uniform(0, 255, 3).astype(np.float32)
        slope = rng.uniform(-0.4, 0.4, (2, 3)).astype(np.float32)
        img = (base + (np.arange(w, dtype=np.float32)[None, :, None] * (slope[0] * 256 / w))
               + (np.arange(h, dtype=np.float32)[:, None, None] * (slope[1] * 256 / h))).astype(np.int16)
        img += rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        out.append(codec.encode(np.clip(img, 0, 255).astype(np.uint8), False, quality))
    return out


class ImageServer:
    """ThreadingHTTPServer on 127.0.0.1:0 serving `images` under /img/<name> and the bad cases:

    /status/<code>   that status          /flaky/<name>   500 on the first request, then the image
    /stall           no answer for stall_s /big            declared body over any small cap
    /stream-big      undeclared big body   /page.jpg       an HTML page
    /loop            redirects to itself   /truncated.jpg  Content-Length larger than the body
    /to/<name>       redirect to /img/<name>   /to-private redirect to a private address
    /slow/<name>     the image after 0.1 s, counting concurrent requests (max_in_flight)
    """

    def __init__(self, images: dict[str, bytes] | None = None, stall_s: float = 5.0,
                 tls: tuple[str, str] | None = None) -> None:
        self.images = dict(images or {})
        self.stall_s = stall_s
        self.hits: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0  # concurrent /slow/ requests: per-host limits show here
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with contextlib.suppress(ConnectionError):  # a client that gave up (timeout, cap) is normal here
                    super().handle()

            def _send(self, status: int, body: bytes, ctype: str = "image/jpeg", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may have given up (stall, cap)
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    hits = server.hits[path]
                if path.startswith("/img/") and path[5:] in server.images:
                    return self._send(200, server.images[path[5:]])
                if path.startswith("/slow/") and path[6:] in server.images:
                    with server._lock:
                        server.in_flight += 1
                        server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    try:
                        server._stop.wait(0.1)
                        return self._send(200, server.images[path[6:]])
                    finally:
                        with server._lock:
                            server.in_flight -= 1
                if path.startswith("/flaky/") and path[7:] in server.images:
                    if hits == 1:
                        return self._send(500, b"try again", "text/plain")
                    return self._send(200, server.images[path[7:]])
                if path.startswith("/to/"):
                    return self._send(302, b"", "text/plain", {"Location": "/img/" + path[4:]})
                if path.startswith("/status/"):
                    return self._send(int(path[8:]), b"error page", "text/html")
                if path == "/stall":
                    server._stop.wait(server.stall_s)
                    return self._send(200, b"", "image/jpeg")
                if path == "/big":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                    return self._drip(1 << 20)
                if path == "/stream-big":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return self._drip(8 << 20)
                if path == "/page.jpg":
                    return self._send(200, b"<html><body>Not an image</body></html>", "text/html; charset=utf-8")
                if path == "/loop":
                    return self._send(302, b"", "text/plain", {"Location": "/loop"})
                if path == "/to-private":
                    return self._send(302, b"", "text/plain", {"Location": PRIVATE_URL})
                if path == "/truncated.jpg":
                    body = next(iter(server.images.values()), b"\xff\xd8\xff" + b"\0" * 4000)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return None
                return self._send(404, b"not found", "text/html")

            def _drip(self, total: int) -> None:
                chunk = b"\xff" * 65536
                with contextlib.suppress(OSError):  # the client hangs up once over its cap
                    for _ in range(total // len(chunk)):
                        self.wfile.write(chunk)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls:  # (certificate file, key file): serve HTTPS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self._stop.set()  # releases stalled handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "ImageServer":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def bad_cases(server: ImageServer) -> dict[str, str]:
    """name → URL for each failure the downloader must report (the expected reason kind is the name's prefix)."""
    return {
        "http-404": server.url("/status/404"),
        "timeout-stall": server.url("/stall"),
        "too_large-declared": server.url("/big"),
        "too_large-streamed": server.url("/stream-big"),
        "content_type-html": server.url("/page.jpg"),
        "redirect-loop": server.url("/loop"),
        "truncated-body": server.url("/truncated.jpg"),
        "url-file": "file:///etc/passwd",
        "blocked-private": PRIVATE_URL,
        "blocked-redirect": server.url("/to-private"),
    }
