"""Concurrent, defensive HTTP(S) download of images with the standard library's http.client.

Guards, in the order a request meets them: only http/https URLs; the host is resolved in a
helper thread with a timeout (a dead resolver costs `dns_timeout_s` once per host, not per
row) and every address it resolves to is checked — private, link-local, loopback and other
non-global ranges are refused before any socket is opened (loopback only with
`allow_loopback`). The connection then goes to the vetted address itself, so a second DNS
answer cannot swap in another one. Redirects are followed by hand, each hop checked the
same way, at most `max_redirects`. Status, content type and declared length are checked
before the body is read; the body is streamed under a byte cap and an overall deadline.
Only failures that may pass (connection errors, connect timeouts, 408/425/429/5xx,
truncated bodies) are retried, with exponential backoff.

http.client rather than httpx: the same guards cost about half the CPU per request (0.19
vs 0.36–0.43 ms on loopback, BENCHMARKS.md), and a LAION build is billions of requests.
Keep-alive connections are pooled per (scheme, host, port); the request asks for the
identity encoding, so the byte cap counts what is read.
"""
from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urljoin, urlsplit

from pydantic import Field

from sources.opt_out import OptOutOptions, disallowing_directive
from uvd.config import Strict
from uvd.errors import BadInput

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Web URLs hold spaces and non-ASCII paths (LAION has many): percent-encoded (UTF-8) as browsers
# do, keeping RFC 3986's reserved characters and the escapes already there.
PATH_SAFE = "/:@!$&'()*+,;=-._~%"
OCTET_STREAM = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class DownloadOptions(Strict):
    concurrency: int = Field(32, ge=1)  # requests in flight per work unit
    per_host: int = Field(8, ge=1)  # of those, at most this many to one host
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)  # longest silence while reading
    total_timeout_s: float = Field(30.0, gt=0)  # one attempt, redirects and body included
    dns_timeout_s: float = Field(2.0, gt=0)
    retries: int = Field(2, ge=0)  # extra attempts, for retryable failures only
    backoff_s: float = Field(0.5, ge=0)  # first wait; doubled each retry
    max_backoff_s: float = Field(10.0, ge=0)
    max_bytes: int = Field(16 << 20, ge=1)
    max_redirects: int = Field(5, ge=0)
    content_types: list[str] = ["image/"]  # accepted prefixes of the Content-Type
    allow_octet_stream: bool = True  # many CDNs serve images as octet-stream or without a type
    allow_loopback: bool = False  # 127.0.0.0/8 and ::1 (tests and the demo serve from there)
    allow_private: bool = False  # RFC 1918, link-local, CGNAT, ULA and other non-global ranges
    verify_tls: bool = True
    user_agent: str = "uvd/0.1 (+visual-sentence dataset builder; img2dataset-compatible)"
    opt_out: OptOutOptions = Field(default_factory=OptOutOptions)  # X-Robots-Tag noai & co. → failed `opt_out`


class FetchError(BadInput):
    """A failed download; `retryable` says whether another attempt may succeed."""

    def __init__(self, kind: str, detail: str, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(kind, detail)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class Fetched:
    data: bytes
    url: str  # after redirects
    content_type: str
    attempts: int


def check_url(url: str) -> tuple[str, str]:
    """(scheme, host) of an http(s) URL; FetchError for anything else (file://, ftp://, no host)."""
    try:
        parts = urlsplit(url)
    except ValueError as err:
        raise FetchError("url", f"unparseable URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchError("url", f"scheme {scheme or '(none)'!r} refused: only http and https are fetched")
    if not parts.hostname:
        raise FetchError("url", "no host in URL")
    return scheme, parts.hostname


# ----------------------------------------------------------------------------------------
# Resolution and the address guard
# ----------------------------------------------------------------------------------------

@dataclass
class _Lookup:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    addresses: list[str] | None = None
    error: FetchError | None = None


class Resolver:
    """getaddrinfo in daemon threads with a deadline, cached per (host, port) for the unit's life,
    failures included: a thousand rows on one dead host cost one lookup."""

    def __init__(self, timeout_s: float, allow_loopback: bool, allow_private: bool) -> None:
        self.timeout_s = timeout_s
        self.allow_loopback = allow_loopback
        self.allow_private = allow_private
        self._cache: dict[tuple[str, int], _Lookup] = {}
        self._lock = threading.Lock()

    def vet(self, address: str, host: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        what = f"{host} is" if host.strip("[]") == address else f"{host} resolves to"
        if ip.is_loopback:
            if not self.allow_loopback:
                raise FetchError("blocked", f"{what} loopback address {ip} (allow_loopback is off)")
        elif ip.is_multicast or ip.is_unspecified or not ip.is_global:
            if not self.allow_private:
                raise FetchError("blocked", f"{what} non-public address {ip} (allow_private is off)")

    def _run(self, key: tuple[str, int], entry: _Lookup) -> None:
        host, port = key
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = list(dict.fromkeys(info[4][0] for info in infos))  # keep the resolver's order
            if not addrs:
                raise socket.gaierror("no addresses")
            for a in addrs:  # one bad address refuses the host: mixed answers are a rebinding trick
                self.vet(a, host)
            entry.addresses = addrs
        except FetchError as err:
            entry.error = err
        except (OSError, UnicodeError, ValueError) as err:
            entry.error = FetchError("dns", f"{host}: {getattr(err, 'strerror', None) or err}")
        finally:
            entry.done.set()

    def addresses(self, host: str, port: int) -> list[str]:
        """Vetted addresses of host, or FetchError (dns/blocked)."""
        try:  # a literal address needs no lookup (and no thread)
            ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
            self.vet(host.strip("[]"), host)
            return [host.strip("[]")]
        except ValueError:
            pass
        key = (host.lower(), port)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = _Lookup(started=time.monotonic())
                threading.Thread(target=self._run, args=(key, entry), daemon=True, name="uvd-dns").start()
        if not entry.done.wait(max(0.0, entry.started + self.timeout_s - time.monotonic())):
            raise FetchError("dns", f"{host}: no answer within {self.timeout_s:g}s")
        if entry.error is not None:
            # A fresh exception per waiter: one object raised in many threads would share a traceback.
            raise FetchError(entry.error.kind, str(entry.error).split(": ", 1)[1])
        assert entry.addresses is not None
        return entry.addresses


class _GuardedConnection:
    """Connects only to addresses the resolver vetted (before any socket exists); the Host
    header, SNI and certificate checks still use the URL's host name."""

    resolver: Resolver
    connect_timeout: float
    read_timeout: float

    def connect(self) -> None:
        last: Exception | None = None
        for address in self.resolver.addresses(self.host, self.port):  # type: ignore[attr-defined]
            try:
                sock = socket.create_connection((address, self.port), self.connect_timeout)  # type: ignore[attr-defined]
            except OSError as err:
                last = err
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.sock = self._wrap(sock)
            except ssl.SSLError as err:  # a certificate or protocol problem will not pass on a retry
                raise FetchError("tls", str(err)) from None
            except TimeoutError:
                raise FetchError("timeout", "connect timed out (TLS handshake)", retryable=True) from None
            except OSError as err:
                raise FetchError("connect", str(err) or type(err).__name__, retryable=True) from None
            self.sock.settimeout(self.read_timeout)
            return
        if isinstance(last, TimeoutError):
            raise FetchError("timeout", "connect timed out", retryable=True)
        raise FetchError("connect", str(last) if last else f"{self.host}: no address to connect to",  # type: ignore[attr-defined]
                         retryable=True)

    def _wrap(self, sock: socket.socket) -> socket.socket:
        return sock


class _HTTP(_GuardedConnection, http.client.HTTPConnection):
    pass


class _HTTPS(_GuardedConnection, http.client.HTTPSConnection):
    ssl_context: ssl.SSLContext

    def _wrap(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(self.connect_timeout)  # the handshake belongs to connecting
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@functools.lru_cache(maxsize=None)
def _ssl_context(verify: bool) -> ssl.SSLContext:
    """One per process: loading the CA store takes ~16 ms, once per unit otherwise, and a
    context is safe to share between threads once configured."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Pool:
    """Idle keep-alive connections per (scheme, host, port); a connection is used by one thread at a time."""

    def __init__(self, resolver: Resolver, o: "DownloadOptions") -> None:
        self.resolver, self.o = resolver, o
        self.ssl_context = _ssl_context(o.verify_tls)
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()

    def get(self, scheme: str, host: str, port: int) -> tuple[http.client.HTTPConnection, bool]:
        """(connection, reused)."""
        with self._lock:
            idle = self._idle.get((scheme, host, port))
            if idle:
                return idle.pop(), True
        conn: _HTTP | _HTTPS
        if scheme == "https":
            conn = _HTTPS(host, port, timeout=self.o.read_timeout_s, context=self.ssl_context)
            conn.ssl_context = self.ssl_context
        else:
            conn = _HTTP(host, port, timeout=self.o.read_timeout_s)
        conn.resolver, conn.connect_timeout, conn.read_timeout = self.resolver, self.o.connect_timeout_s, self.o.read_timeout_s
        return conn, False

    def put(self, scheme: str, host: str, port: int, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle[(scheme, host, port)]
            if len(idle) < self.o.concurrency:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()


# ----------------------------------------------------------------------------------------
# The downloader
# ----------------------------------------------------------------------------------------

# A kept-alive connection the server has closed meanwhile fails like this before any answer:
# sent again once on a fresh connection, not counted as an attempt.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _map_error(err: Exception) -> FetchError:
    """An exception of one request (connecting failures are FetchErrors already) → FetchError."""
    if isinstance(err, FetchError):
        return err
    if isinstance(err, TimeoutError):
        # A server that stalled once usually stalls again: not retried, it would only multiply the wait.
        return FetchError("timeout", "read timed out (no data)")
    if isinstance(err, http.client.IncompleteRead):
        return FetchError("truncated", f"incomplete body ({len(err.partial)} bytes read)", retryable=True)
    if isinstance(err, http.client.RemoteDisconnected):
        return FetchError("protocol", "server disconnected without sending a response", retryable=True)
    if isinstance(err, http.client.InvalidURL):
        return FetchError("url", str(err))
    if isinstance(err, http.client.HTTPException):
        return FetchError("protocol", f"{type(err).__name__}: {err}", retryable=True)
    if isinstance(err, ssl.SSLError):
        return FetchError("tls", str(err))
    if isinstance(err, OSError):
        return FetchError("io", str(err) or type(err).__name__, retryable=True)
    if isinstance(err, (UnicodeError, ValueError)):
        return FetchError("url", f"{type(err).__name__}: {err}")
    raise err


def _retry_after(value: str | None, cap: float) -> float | None:
    try:
        return min(cap, max(0.0, float(value))) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Downloader:
    """One per work unit: a thread pool of `concurrency` workers sharing one connection pool."""

    def __init__(self, options: DownloadOptions) -> None:
        self.o = options
        self.resolver = Resolver(options.dns_timeout_s, options.allow_loopback, options.allow_private)
        self.connections = _Pool(self.resolver, options)
        self.headers = {"User-Agent": options.user_agent, "Accept": "image/*,*/*;q=0.5"}
        self.pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="uvd-dl")
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()

    def __enter__(self) -> "Downloader":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.connections.close()

    def submit(self, url: str, then: Callable[[Fetched], Any] | None = None) -> Future:
        """Fetch in the pool; `then` (e.g. decoding) runs on the result in the same worker thread."""
        if then is None:
            return self.pool.submit(self.fetch, url)
        return self.pool.submit(lambda: then(self.fetch(url)))

    def fetch(self, url: str) -> Fetched:
        """The image bytes at url, or FetchError with the reason of the last attempt."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(url, attempt)
            except FetchError as err:
                if not err.retryable or attempt > self.o.retries:
                    if attempt > 1:
                        raise FetchError(err.kind, f"{str(err).split(': ', 1)[1]} (after {attempt} attempts)") from None
                    raise
                wait = err.retry_after if err.retry_after is not None else self.o.backoff_s * 2 ** (attempt - 1)
                time.sleep(min(wait, self.o.max_backoff_s))

    def _slot(self, host: str) -> threading.BoundedSemaphore:
        with self._slots_lock:
            if host not in self._slots:
                self._slots[host] = threading.BoundedSemaphore(self.o.per_host)
            return self._slots[host]

    def _attempt(self, url: str, attempt: int) -> Fetched:
        deadline = time.monotonic() + self.o.total_timeout_s
        current = url
        for hop in range(self.o.max_redirects + 1):
            scheme, host = check_url(current)
            if not host.isascii():
                try:  # an internationalised name must have an ASCII form to be looked up and sent
                    host.encode("idna")
                except UnicodeError as err:
                    raise FetchError("url", f"host name cannot be encoded ({err})") from None
            parts = urlsplit(current)
            try:
                port = parts.port or (443 if scheme == "https" else 80)
            except ValueError as err:
                raise FetchError("url", str(err)) from None
            target = quote(parts.path or "/", safe=PATH_SAFE) + (
                "?" + quote(parts.query, safe=PATH_SAFE + "?") if parts.query else "")
            with self._slot(host.lower()):
                resp, conn = self._request(scheme, host, port, target)
                try:
                    location = resp.getheader("location")
                    if resp.status in (301, 302, 303, 307, 308) and location:
                        current = urljoin(current, location.strip())
                        conn.close()  # the redirect's body is not read: this connection is not reused
                        continue
                    fetched = self._body(resp, current, deadline, attempt)
                except BaseException as err:
                    conn.close()
                    if isinstance(err, Exception):
                        raise _map_error(err) from None
                    raise
                self.connections.put(scheme, host, port, conn)
                return fetched
        raise FetchError("redirect", f"more than {self.o.max_redirects} redirects (last: {current})")

    def _request(self, scheme: str, host: str, port: int, target: str
                 ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """The response's status line and headers, on a pooled keep-alive connection when there is one."""
        while True:
            conn, reused = self.connections.get(scheme, host, port)
            try:
                conn.request("GET", target, headers=self.headers)
                return conn.getresponse(), conn
            except BaseException as err:
                conn.close()
                if reused and isinstance(err, STALE):
                    continue  # the next one comes from the pool or is fresh: the loop ends
                if isinstance(err, Exception):
                    raise _map_error(err) from None
                raise

    def _body(self, resp: http.client.HTTPResponse, url: str, deadline: float, attempt: int) -> Fetched:
        status = resp.status
        if not 200 <= status < 300:
            raise FetchError("http", f"{status} {resp.reason}".strip(), retryable=status in RETRY_STATUS,
                             retry_after=_retry_after(resp.getheader("retry-after"), self.o.max_backoff_s))
        refused = disallowing_directive(resp.headers.get_all("x-robots-tag") or [], self.o.opt_out)
        if refused:
            raise FetchError("opt_out", f"X-Robots-Tag: {refused}")
        ctype = (resp.getheader("content-type") or "").split(";", 1)[0].strip().lower()
        if not (any(ctype.startswith(p) for p in self.o.content_types)
                or (self.o.allow_octet_stream and ctype in OCTET_STREAM)):
            raise FetchError("content_type", f"{ctype} is not an image type")
        declared = resp.getheader("content-length")
        if declared and declared.isdigit() and int(declared) > self.o.max_bytes:
            raise FetchError("too_large", f"Content-Length {declared} > max_bytes {self.o.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while chunk := resp.read(1 << 16):
            size += len(chunk)
            if size > self.o.max_bytes:
                raise FetchError("too_large", f"body over max_bytes {self.o.max_bytes}")
            if time.monotonic() > deadline:
                raise FetchError("timeout", f"body not complete within {self.o.total_timeout_s:g}s")
            chunks.append(chunk)
        if resp.length:  # http.client ends a short body quietly: the bytes still owed say it was cut
            raise FetchError("truncated", f"incomplete body ({size} bytes read, {resp.length} more declared)",
                             retryable=True)
        return Fetched(b"".join(chunks), url, ctype, attempt)
