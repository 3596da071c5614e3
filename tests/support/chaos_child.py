"""What a fork of the chaos drill's fork server runs: the `uvd` CLI, as `python -m uvd ARGV` would.

Imported by the fork server before it forks (so each run skips the interpreter start and the
imports); it must start no thread at import time.
"""
from __future__ import annotations

import os
import sys
import threading
import traceback

import pyarrow.parquet  # noqa: F401  (imported once in the server, not in every run)
import s3fs  # noqa: F401  (fsspec imports it on the first s3:// URL; it starts no thread until used)
from tqdm import tqdm

import sources.image_folder  # noqa: F401
import sources.img2dataset_output  # noqa: F401
import tests.support.tiny_units  # noqa: F401
import uvd.cli
import uvd.cli.build_cmd  # noqa: F401
import uvd.runner  # noqa: F401

# tqdm's default write lock is a multiprocessing semaphore, made on the first log line; a run killed
# (or ended with os._exit) never unlinks it and the resource tracker reports a leak per run. A run
# is one process: a thread lock does.
tqdm.set_lock(threading.RLock())


def run_cli(argv: list[str], env: dict[str, str], log: str, cwd: str) -> None:
    """In the forked child: a session of its own, stdout and stderr to `log`, `env` as the whole
    environment, then the CLI; the process ends with its exit status and no cleanup of the parent's."""
    os.setsid()  # a kill of its process group takes only this run
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        rc = uvd.cli.main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
