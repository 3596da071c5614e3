"""A loopback HTTP server that answers slowly on purpose: one byte every `interval_s`.

    /headers      the whole response head (status line included) trickled, then the body
    /body         the head at once (Content-Length: body size), then the body trickled
    /img/<name>   the image `images[name]` at once (Connection: close)

No single read ever waits long, so only a deadline over the whole response ends it. Each
trickle stops after `limit_s` (so a client without a deadline still ends, late) or when the
server is closed.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

BODY = b"\xff\xd8\xff" + b"\x00" * 4000 + b"\xff\xd9"  # the trickled body: never complete in a test


class TrickleServer:
    def __init__(self, images: dict[str, bytes] | None = None, interval_s: float = 0.25, limit_s: float = 30.0) -> None:
        self.images = dict(images or {})
        self.interval_s, self.limit_s = interval_s, limit_s
        self.hits: dict[str, int] = {}
        self._stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for i in range(min(len(data), int(self.limit_s / self.interval_s))):
            if self._stop.wait(self.interval_s):
                return
            conn.sendall(data[i:i + 1])

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client hanging up at its deadline is the point
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1].decode()
            self.hits[path] = self.hits.get(path, 0) + 1
            if path.startswith("/img/") and path[5:] in self.images:
                body = self.images[path[5:]]
                conn.sendall(self._head(len(body)) + body)
            elif path == "/headers":
                # A long header line: the head never ends before the limit.
                self._trickle(conn, self._head(len(BODY), "X-Pad: " + "a" * 4096) + BODY)
            elif path == "/body":
                conn.sendall(self._head(len(BODY)))
                self._trickle(conn, BODY)
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    @staticmethod
    def _head(length: int, extra: str = "") -> bytes:
        lines = ["HTTP/1.1 200 OK", "Content-Type: image/jpeg", f"Content-Length: {length}", "Connection: close"]
        return ("\r\n".join(lines + ([extra] if extra else [])) + "\r\n\r\n").encode()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def __enter__(self) -> "TrickleServer":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
