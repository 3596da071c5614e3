"""The downloader's own HTTP client (http.client underneath): keep-alive reuse, a server that
drops an idle connection, chunked and truncated bodies — each still ends as before: the bytes,
or a FetchError with its reason."""
from __future__ import annotations

import socket
import threading

import pytest

from tests.support.laion import FAST_DOWNLOAD
from sources.download import Downloader, DownloadOptions, FetchError

BODY = b"\xff\xd8\xff" + bytes(range(256)) * 40 + b"\xff\xd9"


class RawServer:
    """One-connection-at-a-time HTTP/1.1 server on loopback whose replies the test writes by hand.

    reply(request_number) → (raw response bytes, close the connection afterwards?)"""

    def __init__(self, reply) -> None:
        self.reply, self.requests, self.connections = reply, 0, 0
        self.lines: list[bytes] = []  # request lines, as sent
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.lines.append(head.split(b"\r\n", 1)[0])
                    self.requests += 1
                    raw, close = self.reply(self.requests)
                    conn.sendall(raw)
                    if close:
                        break

    def url(self, path: str = "/a.jpg") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.sock.close()


def image_response(body: bytes = BODY, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


def test_keep_alive_connection_is_reused_across_requests():
    srv = RawServer(lambda n: (image_response(), False))
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "concurrency": 1})) as dl:
        for _ in range(5):
            fetched = dl.fetch(srv.url())
            assert fetched.data == BODY and fetched.attempts == 1
    srv.close()
    assert srv.requests == 5 and srv.connections == 1


def test_idle_connection_dropped_by_the_server_is_replaced_without_costing_an_attempt():
    srv = RawServer(lambda n: (image_response(), True))  # answers keep-alive, then hangs up anyway
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "concurrency": 1, "retries": 0})) as dl:
        for _ in range(3):
            fetched = dl.fetch(srv.url())
            assert fetched.data == BODY and fetched.attempts == 1
    srv.close()
    assert srv.requests == 3 and srv.connections == 3


def test_chunked_body_is_read_whole_and_a_cut_chunked_body_is_truncated():
    half = len(BODY) // 2
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % half + BODY[:half] + b"\r\n" + b"%x\r\n" % (len(BODY) - half) + BODY[half:]
               + b"\r\n0\r\n\r\n")
    srv = RawServer(lambda n: (chunked, False))
    with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:
        assert dl.fetch(srv.url()).data == BODY
    srv.close()
    cut = chunked[: chunked.index(BODY[half:]) + 10]
    srv = RawServer(lambda n: (cut, True))
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "retries": 1, "backoff_s": 0.01})) as dl:
        with pytest.raises(FetchError) as err:
            dl.fetch(srv.url())
    srv.close()
    assert err.value.kind == "truncated" and "after 2 attempts" in str(err.value)
    assert srv.requests == 2


def test_status_line_garbage_is_a_protocol_error_and_relative_redirects_are_followed():
    srv = RawServer(lambda n: (b"NOT HTTP AT ALL\r\n\r\n", True))
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "retries": 0})) as dl:
        with pytest.raises(FetchError) as err:
            dl.fetch(srv.url())
    srv.close()
    assert err.value.kind == "protocol"
    srv = RawServer(lambda n: ((b"HTTP/1.1 302 Found\r\nLocation: /b.jpg?x=1\r\nContent-Length: 0\r\n\r\n", False)
                               if n == 1 else (image_response(), False)))
    with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:
        fetched = dl.fetch(srv.url())
    srv.close()
    assert fetched.data == BODY and fetched.url == srv.url("/b.jpg?x=1")


def test_spaces_and_non_ascii_in_urls_are_percent_encoded_as_browsers_do():
    srv = RawServer(lambda n: (image_response(), False))
    with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:
        fetched = dl.fetch(srv.url("/my photos/été.jpg?size=big&name=a b#frag"))
        assert dl.fetch(srv.url("/already%20escaped.jpg")).data == BODY
    srv.close()
    assert fetched.data == BODY
    assert srv.lines == [b"GET /my%20photos/%C3%A9t%C3%A9.jpg?size=big&name=a%20b HTTP/1.1",
                         b"GET /already%20escaped.jpg HTTP/1.1"]


def test_a_host_name_without_an_ascii_form_is_a_url_error():
    with Downloader(DownloadOptions(**FAST_DOWNLOAD)) as dl:
        with pytest.raises(FetchError) as err:
            dl.fetch("http://" + "é" * 70 + ".example/a.jpg")  # a label over 63 characters
    assert err.value.kind == "url" and "cannot be encoded" in str(err.value)
