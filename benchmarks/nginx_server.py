"""A static file server for benchmarks: Debian's nginx in its own processes on 127.0.0.1.

Fast enough that neither downloader waits for it (sendfile, keep-alive, no access log), and
its CPU time shows up in the machine-wide accounting like any real image host's would not —
so both sides pay the same for it. `ensure_nginx()` installs `nginx-light` with apt-get when
it is missing (needs root, as on the benchmark machines).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = """\
{user}worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    types {{ image/jpeg jpg; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location /img/ {{ alias {root}/; }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def ensure_nginx() -> str:
    """The nginx binary, installing Debian's nginx-light first if needed."""
    found = nginx_binary()
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=False, env=env,
                   stdout=subprocess.DEVNULL)
    found = nginx_binary()
    if not found:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        found = nginx_binary()
    if not found:
        raise RuntimeError("nginx not found and apt-get could not install nginx-light")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """with Nginx(folder, workdir) as base: base + '/img/<file>' serves folder/<file>."""

    def __init__(self, folder: Path, workdir: Path) -> None:
        self.folder, self.run = Path(folder).resolve(), Path(workdir).resolve()

    def __enter__(self) -> str:
        binary = ensure_nginx()
        self.run.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the cache folder
        conf = self.run / "nginx.conf"
        conf.write_text(CONF.format(user=user, run=self.run, port=port, root=self.folder))
        self.proc = subprocess.Popen([binary, "-p", str(self.run), "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("nginx did not start listening within 10 s")

    def __exit__(self, *_: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
