"""Concurrent, defensive HTTP(S) download of images with the standard library's http.client.

Guards, in the order a request meets them: only http/https URLs, port 0 refused; the host
is resolved in a helper thread with a timeout (a dead resolver costs `dns_timeout_s` once
per host, not per row) and every address it resolves to is judged by
`sources/address_guard.py` — unspecified, private, link-local, loopback and other non-global
ranges, in every IPv6 form that wraps them, are refused before any socket is opened
(loopback only at an endpoint listed in `allow_loopback`). The connection then goes to the
vetted address itself, so a second DNS answer cannot swap in another one. Redirects are
followed by hand, each hop checked the same way, at most `max_redirects`. Status, content
type and declared length are checked before the body is read.

One deadline per attempt (`total_timeout_s`) covers the lookup, connecting, TLS, the
response headers and the body: before every read from the socket its timeout is set to the
time left (`_DeadlineReader`), so a server that trickles a byte at a time cannot outlive it.
Only failures that may pass (connection errors, connect timeouts, 408/425/429/5xx,
truncated bodies) are retried, with exponential backoff. Error messages never carry a URL's
credentials or signed-URL secrets (`uvd/url_redact.py`); the request itself uses them.

http.client rather than httpx: the same guards cost about half the CPU per request (0.19
vs 0.36–0.43 ms on loopback, BENCHMARKS.md), and a LAION build is billions of requests.
Keep-alive connections are pooled per (scheme, host, port); the request asks for the
identity encoding, so the byte cap counts what is read.
"""
from __future__ import annotations

import base64
import functools
import http.client
import io
import ipaddress
import math
import socket
import ssl
import threading
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Union
from urllib.parse import quote, unquote, urljoin, urlsplit

from pydantic import Field, field_validator

from sources.address_guard import AddressRefused, Endpoint, vet
from sources.opt_out import OptOutOptions, opt_out_reason
from uvd.url_redact import DEFAULT_SECRET_PARAMS, redact_text, secrets_in
from uvd.config import Strict
from uvd.errors import BadInput

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Web URLs hold spaces and non-ASCII paths (LAION has many): percent-encoded (UTF-8) as browsers
# do, keeping RFC 3986's reserved characters and the escapes already there.
PATH_SAFE = "/:@!$&'()*+,;=-._~%"
OCTET_STREAM = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class DownloadOptions(Strict):
    operational_keys = frozenset({"concurrency", "per_host", "connect_timeout_s", "read_timeout_s", "total_timeout_s", "dns_timeout_s", "retries", "backoff_s", "max_backoff_s", "user_agent"})  # uvd.config.Strict
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
    # Loopback endpoints that may be fetched, as host:port ("127.0.0.1:8080", "localhost:8080",
    # "[::1]:8080"): the demo's and benchmarks' servers. Any other local port stays refused, on
    # the first hop and after a redirect. `true` is a deprecated alias: the loopback endpoint
    # of the URL as given (host and port), and no other, for each row.
    allow_loopback: Union[bool, list[str]] = Field(default_factory=list)
    allow_private: bool = False  # RFC 1918, link-local, CGNAT, ULA and other non-global ranges
    verify_tls: bool = True
    user_agent: str = "uvd/0.1 (+visual-sentence dataset builder; img2dataset-compatible)"
    opt_out: OptOutOptions = Field(default_factory=OptOutOptions)  # X-Robots-Tag, TDMRep → failed `opt_out`
    # Query/fragment parameters whose values are masked wherever a URL is written (meta, audit,
    # logs): signed-URL signatures, credentials, tokens. Credentials `user:pass@` always go.
    redact_params: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_PARAMS))

    @field_validator("allow_loopback")
    @classmethod
    def _endpoints(cls, v: Union[bool, list[str]]) -> Union[bool, list[str]]:
        if isinstance(v, list):
            for entry in v:
                Endpoint.parse(entry)  # ValueError → a config error naming the entry
        return v

    def loopback_endpoints(self) -> list[Endpoint]:
        """The listed endpoints; none for `true`/`false` (the alias is resolved per URL)."""
        return [Endpoint.parse(e) for e in self.allow_loopback] if isinstance(self.allow_loopback, list) else []


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
    failures included: a thousand rows on one dead host cost one lookup. Judging the addresses
    is the caller's (per hop: which loopback endpoints are allowed depends on the row)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._cache: dict[tuple[str, int], _Lookup] = {}
        self._lock = threading.Lock()

    def _run(self, key: tuple[str, int], entry: _Lookup) -> None:
        host, port = key
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = list(dict.fromkeys(info[4][0] for info in infos))  # keep the resolver's order
            if not addrs:
                raise socket.gaierror("no addresses")
            entry.addresses = addrs
        except (OSError, UnicodeError, ValueError) as err:
            entry.error = FetchError("dns", f"{host}: {getattr(err, 'strerror', None) or err}")
        finally:
            entry.done.set()

    def addresses(self, host: str, port: int, deadline: float = math.inf) -> list[str]:
        """Addresses of host (not judged), or FetchError: dns, or timeout when `deadline` comes first."""
        try:  # a literal address needs no lookup (and no thread)
            ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
            return [host.strip("[]")]
        except ValueError:
            pass
        key = (host.lower(), port)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = _Lookup(started=time.monotonic())
                threading.Thread(target=self._run, args=(key, entry), daemon=True, name="uvd-dns").start()
        dns_end = entry.started + self.timeout_s
        if not entry.done.wait(max(0.0, min(dns_end, deadline) - time.monotonic())):
            if deadline < dns_end:
                raise FetchError("timeout", f"{host}: deadline passed while resolving")
            raise FetchError("dns", f"{host}: no answer within {self.timeout_s:g}s")
        if entry.error is not None:
            # A fresh exception per waiter: one object raised in many threads would share a traceback.
            raise FetchError(entry.error.kind, str(entry.error).split(": ", 1)[1])
        assert entry.addresses is not None
        return entry.addresses


class DeadlinePassed(TimeoutError):
    """The attempt's `total_timeout_s` ran out (not one silent read)."""


class _DeadlineReader(io.RawIOBase):
    """The response's socket file, with the socket's timeout cut to the time left before each
    read: a trickle of one byte per second keeps every single read short, but not the whole."""

    def __init__(self, raw: Any, sock: socket.socket, deadline: float, read_timeout: float) -> None:
        self.raw, self.sock, self.deadline, self.read_timeout = raw, sock, deadline, read_timeout
        self._timeout: float | None = None  # last value set: the syscall is skipped while it holds

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed()
        t = min(self.read_timeout, left)
        if t != self._timeout:
            self.sock.settimeout(t)
            self._timeout = t
        try:
            return self.raw.readinto(b)
        except TimeoutError:
            if time.monotonic() >= self.deadline - 0.01:
                raise DeadlinePassed() from None
            raise

    def close(self) -> None:
        self.raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client reads the status line, the headers and the body through `fp`: all of it
    goes through the deadline reader."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()
        # An unbuffered socket file underneath keeps the socket's reference count, so a response
        # that outlives its connection (Connection: close) can still read its body.
        raw = _DeadlineReader(sock.makefile("rb", buffering=0), sock, deadline, read_timeout)
        self.fp = io.BufferedReader(raw)


class _GuardedConnection:
    """Connects only to the addresses vetted for this hop (before any socket exists), within the
    attempt's deadline; the Host header, SNI and certificate checks still use the URL's host name."""

    addresses: list[str]  # set by the downloader for each request
    deadline: float = math.inf
    connect_timeout: float
    read_timeout: float

    def response_class(self, sock: socket.socket, *args: Any, **kwargs: Any) -> http.client.HTTPResponse:
        # http.client calls self.response_class(sock, method=...): a method here passes the deadline along.
        return _DeadlineResponse(sock, self.deadline, self.read_timeout, *args, **kwargs)

    def _left(self, cap: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FetchError("timeout", "deadline passed while connecting")
        return min(cap, left)

    def connect(self) -> None:
        last: Exception | None = None
        for address in self.addresses:
            try:
                sock = socket.create_connection((address, self.port),  # type: ignore[attr-defined]
                                                self._left(self.connect_timeout))
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
            self.sock.settimeout(self._left(self.read_timeout))
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
        try:
            sock.settimeout(self._left(self.connect_timeout))  # the handshake belongs to connecting
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

    def __init__(self, o: "DownloadOptions") -> None:
        self.o = o
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
        conn.connect_timeout, conn.read_timeout = self.o.connect_timeout_s, self.o.read_timeout_s
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
    if isinstance(err, DeadlinePassed):
        return FetchError("timeout", "no complete response within total_timeout_s")
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
        self.resolver = Resolver(options.dns_timeout_s)
        self.endpoints = options.loopback_endpoints()
        self.connections = _Pool(options)
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
        """The image bytes at url, or FetchError with the reason of the last attempt (its message
        without the URL's credentials and signed-URL secrets: it is written to the audit)."""
        try:
            return self._fetch(url)
        except FetchError as err:
            detail = str(err).split(": ", 1)[1] if ": " in str(err) else ""
            clean = self._scrub(detail, url)
            if clean == detail:
                raise
            raise FetchError(err.kind, clean, err.retryable, err.retry_after) from None
        except Exception as err:  # a bug's message may quote the URL too; audited as `error:` all the same
            raise FetchError("error", self._scrub(f"{type(err).__name__}: {err}", url)) from err

    def _scrub(self, text: str, url: str) -> str:
        params = self.o.redact_params
        return redact_text(text, params, secrets_in(url, params))

    def _fetch(self, url: str) -> Fetched:
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
        allowed = self.endpoints
        origin: tuple[str, str, int] | None = None
        for hop in range(self.o.max_redirects + 1):
            if time.monotonic() >= deadline:
                raise FetchError("timeout", f"redirects not done within {self.o.total_timeout_s:g}s")
            scheme, host = check_url(current)
            if not host.isascii():
                try:  # an internationalised name must have an ASCII form to be looked up and sent
                    host.encode("idna")
                except UnicodeError as err:
                    raise FetchError("url", f"host name cannot be encoded ({err})") from None
            parts = urlsplit(current)
            try:
                port = parts.port if parts.port is not None else (443 if scheme == "https" else 80)
            except ValueError as err:
                raise FetchError("url", str(err)) from None
            if port == 0:  # the kernel would pick a port (or 80): never what the URL meant
                raise FetchError("url", "port 0 refused")
            if origin is None:
                origin = (scheme, host.lower(), port)
                if self.o.allow_loopback is True:  # the deprecated alias: this row's own endpoint only
                    allowed = [*allowed, Endpoint(host.strip("[]").lower(), port)]
            addresses = self.resolver.addresses(host, port, deadline)
            try:
                vet(host, port, addresses, allowed, self.o.allow_private)
            except AddressRefused as err:
                raise FetchError("blocked", str(err)) from None
            target = quote(parts.path or "/", safe=PATH_SAFE) + (
                "?" + quote(parts.query, safe=PATH_SAFE + "?") if parts.query else "")
            headers = self.headers
            if parts.username is not None and origin == (scheme, host.lower(), port):
                # Credentials in the URL are sent to its own origin only, never after a redirect elsewhere.
                creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
                headers = {**headers, "Authorization": "Basic " + base64.b64encode(creds).decode()}
            with self._slot(host.lower()):
                resp, conn = self._request(scheme, host, port, target, headers, addresses, deadline)
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

    def _request(self, scheme: str, host: str, port: int, target: str, headers: dict[str, str],
                 addresses: list[str], deadline: float
                 ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """The response's status line and headers, on a pooled keep-alive connection when there is one."""
        while True:
            conn, reused = self.connections.get(scheme, host, port)
            conn.addresses, conn.deadline = addresses, deadline  # type: ignore[attr-defined]
            try:
                if conn.sock is not None:  # a pooled socket still has the timeout its last request left
                    conn.sock.settimeout(conn._left(self.o.read_timeout_s))  # type: ignore[attr-defined]
                conn.request("GET", target, headers=headers)
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
        refused = opt_out_reason(resp.headers.get_all, self.o.opt_out)
        if refused:
            raise FetchError("opt_out", refused)
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
