"""A moto S3 server on loopback that counts the requests it serves (per HTTP method)."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class RequestCount:
    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        # Wall seconds with at least one request inside moto: moto 5 scans every key of the bucket
        # for each LIST page, so on big buckets its time is not S3's and is told apart.
        self.server_s = 0.0
        self._in_flight, self._since = 0, 0.0
        self._lock = threading.Lock()

    def enter(self, method: str) -> None:
        with self._lock:
            self.by_method[method] += 1
            if not self._in_flight:
                self._since = time.perf_counter()
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if not self._in_flight:
                self.server_s += time.perf_counter() - self._since

    @property
    def total(self) -> int:
        return sum(self.by_method.values())

    def reset(self) -> None:
        with self._lock:
            self.by_method.clear()
            self.server_s = 0.0
            self._since = time.perf_counter()


class _CountingServer(ThreadedMotoServer):
    def __init__(self, count: RequestCount, **kw: Any) -> None:
        super().__init__(**kw)
        self.count = count

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.count.enter(environ.get("REQUEST_METHOD", "?"))
            try:
                return app(environ, start_response)  # moto builds the whole body here
            finally:
                self.count.leave()

        self._server = make_server(self._ip_address, self._port, counted, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def counting_moto(bucket: str = "uvd") -> Iterator[tuple[dict[str, str], RequestCount]]:
    """(environment pointing boto/s3fs at the server, its request count); the bucket exists."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    count = RequestCount()
    server = _CountingServer(count, ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fsspec
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem would still talk to an earlier server
    try:
        if not fsspec.filesystem("s3", skip_instance_cache=True).exists(bucket):  # moto's state is per process
            fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
        count.reset()
        yield env, count
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def seed_moto(folder: Path | str, bucket: str, prefix: str) -> int:
    """Put every file under `folder` at `<bucket>/<prefix>/…` straight into the moto backend of this
    process (benchmark set-up: 2×10^5 PUTs over HTTP take half an hour; the objects are the same).
    The server must run in this process (`counting_moto`) and the bucket exist; returns the count."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    for path in files:
        backend.put_object(bucket, f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}", path.read_bytes())
    return len(files)


@contextmanager
def indexed_listing() -> Iterator[None]:
    """moto's LIST answered from a sorted index of the bucket's key names (bisect on the prefix), as
    S3 answers it, instead of moto 5's scan and sort of every key for each page. For benchmarks
    whose buckets hold 10^5 keys, so what is timed is the client; the results are the same (only
    the no-delimiter and "/"-delimiter listings benchmarks make; the index follows the key count)."""
    import bisect

    from moto.s3.models import FakeDeleteMarker, S3Backend

    real = S3Backend.list_objects
    index: dict[int, tuple[int, list[str]]] = {}  # id(bucket) → (key count, sorted names)

    def list_objects(self: Any, bucket: Any, prefix: str | None, delimiter: str | None, marker: str | None,
                     max_keys: int | None) -> Any:
        if marker or max_keys is not None or delimiter not in (None, "", "/"):
            return real(self, bucket, prefix, delimiter, marker, max_keys)
        count = len(bucket.keys)
        cached = index.get(id(bucket))
        if cached is None or cached[0] != count:
            cached = index[id(bucket)] = (count, sorted(bucket.keys.keys()))
        names, prefix = cached[1], prefix or ""
        lo = bisect.bisect_left(names, prefix)
        hi = bisect.bisect_left(names, prefix + "\U0010ffff")
        keys, folders = [], set()
        for name in names[lo:hi]:
            rest = name[len(prefix):]
            if delimiter and delimiter in rest:
                folders.add(prefix + rest.split(delimiter)[0] + delimiter)
                continue
            key = bucket.keys[name]
            if not isinstance(key, FakeDeleteMarker):
                keys.append(key)
        return keys, sorted(folders), False, None

    S3Backend.list_objects = list_objects
    try:
        yield
    finally:
        S3Backend.list_objects = real
