"""Concurrent, defensive HTTP(S) download of images with httpx.

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
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import httpcore
import httpx
from pydantic import Field

from sources.opt_out import OptOutOptions, disallowing_directive
from uvd.config import Strict
from uvd.errors import BadInput

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
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


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to addresses the resolver vetted (before any socket exists)."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in self.resolver.addresses(host, port):
            try:  # TLS still uses the request's host name for SNI and certificate checks
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as err:
                last = err
        raise last if last else httpcore.ConnectError(f"{host}: no address to connect to")


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, resolver: Resolver, limits: httpx.Limits, verify: bool) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, limits=limits, trust_env=False)
        # httpx has no argument for the network backend; its pool does.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(resolver))


# ----------------------------------------------------------------------------------------
# The downloader
# ----------------------------------------------------------------------------------------

def _map_httpx(err: Exception, url: str) -> FetchError:
    if isinstance(err, FetchError):
        return err
    if isinstance(err, httpx.ConnectTimeout):
        return FetchError("timeout", "connect timed out", retryable=True)
    if isinstance(err, httpx.ReadTimeout):
        # A server that stalled once usually stalls again: not retried, it would only multiply the wait.
        return FetchError("timeout", "read timed out (no data)")
    if isinstance(err, httpx.TimeoutException):
        return FetchError("timeout", f"{type(err).__name__}")
    if isinstance(err, httpx.RemoteProtocolError):
        msg = str(err)
        if "complete message body" in msg or "incomplete chunked read" in msg:
            return FetchError("truncated", msg, retryable=True)
        return FetchError("protocol", msg or type(err).__name__, retryable=True)
    if isinstance(err, httpx.ConnectError):
        if "CERTIFICATE_VERIFY_FAILED" in str(err) or "SSL" in str(err):  # will not pass on a retry
            return FetchError("tls", str(err))
        return FetchError("connect", str(err) or "connection failed", retryable=True)
    if isinstance(err, (httpx.ReadError, httpx.WriteError)):
        return FetchError("io", str(err) or type(err).__name__, retryable=True)
    if isinstance(err, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return FetchError("url", str(err))
    if isinstance(err, httpx.HTTPError):
        return FetchError("http", f"{type(err).__name__}: {err}")
    if isinstance(err, UnicodeError):
        return FetchError("url", f"host name cannot be encoded ({err})")
    raise err


def _retry_after(value: str | None, cap: float) -> float | None:
    try:
        return min(cap, max(0.0, float(value))) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Downloader:
    """One per work unit: a thread pool of `concurrency` workers sharing one httpx client."""

    def __init__(self, options: DownloadOptions) -> None:
        self.o = options
        self.resolver = Resolver(options.dns_timeout_s, options.allow_loopback, options.allow_private)
        limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
        self.client = httpx.Client(
            transport=GuardedTransport(self.resolver, limits, options.verify_tls),
            timeout=httpx.Timeout(connect=options.connect_timeout_s, read=options.read_timeout_s,
                                  write=options.read_timeout_s, pool=options.total_timeout_s),
            headers={"User-Agent": options.user_agent, "Accept": "image/*,*/*;q=0.5"},
            follow_redirects=False, trust_env=False)
        self.pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="uvd-dl")
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()

    def __enter__(self) -> "Downloader":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

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
            _, host = check_url(current)
            with self._slot(host.lower()):
                try:
                    resp = self.client.send(self.client.build_request("GET", current), stream=True)
                except Exception as err:
                    raise _map_httpx(err, current) from None
                try:
                    if resp.is_redirect and resp.next_request is not None:
                        current = str(resp.next_request.url)
                        continue
                    return self._body(resp, current, deadline, attempt)
                except FetchError:
                    raise
                except Exception as err:
                    raise _map_httpx(err, current) from None
                finally:
                    resp.close()
        raise FetchError("redirect", f"more than {self.o.max_redirects} redirects (last: {current})")

    def _body(self, resp: httpx.Response, url: str, deadline: float, attempt: int) -> Fetched:
        status = resp.status_code
        if not 200 <= status < 300:
            raise FetchError("http", f"{status} {resp.reason_phrase}".strip(), retryable=status in RETRY_STATUS,
                             retry_after=_retry_after(resp.headers.get("retry-after"), self.o.max_backoff_s))
        refused = disallowing_directive(resp.headers.get_list("x-robots-tag"), self.o.opt_out)
        if refused:
            raise FetchError("opt_out", f"X-Robots-Tag: {refused}")
        ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not (any(ctype.startswith(p) for p in self.o.content_types)
                or (self.o.allow_octet_stream and ctype in OCTET_STREAM)):
            raise FetchError("content_type", f"{ctype} is not an image type")
        declared = resp.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.o.max_bytes:
            raise FetchError("too_large", f"Content-Length {declared} > max_bytes {self.o.max_bytes}")
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes(1 << 16):
            size += len(chunk)
            if size > self.o.max_bytes:
                raise FetchError("too_large", f"body over max_bytes {self.o.max_bytes}")
            if time.monotonic() > deadline:
                raise FetchError("timeout", f"body not complete within {self.o.total_timeout_s:g}s")
            chunks.append(chunk)
        return Fetched(b"".join(chunks), url, ctype, attempt)

