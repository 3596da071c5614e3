"""A moto S3 server on loopback that counts the requests it serves (per HTTP method)."""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class RequestCount:
    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, method: str) -> None:
        with self._lock:
            self.by_method[method] += 1

    @property
    def total(self) -> int:
        return sum(self.by_method.values())

    def reset(self) -> None:
        with self._lock:
            self.by_method.clear()


class _CountingServer(ThreadedMotoServer):
    def __init__(self, count: RequestCount, **kw: Any) -> None:
        super().__init__(**kw)
        self.count = count

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.count.add(environ.get("REQUEST_METHOD", "?"))
            return app(environ, start_response)

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
