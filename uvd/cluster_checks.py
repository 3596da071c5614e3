"""Cluster guard rails: on a Ray cluster of several nodes, every node must see the output and the inputs.

A local path names a folder on the driver's machine. A task that Ray runs on another node would
write its shard to that node's disk (where `uvd validate` and the next run never look) or fail to
find its inputs; `memory://` lives inside one process. So with more than one node a build refuses
such paths at plan time, unless the user says the local paths are a filesystem every node mounts
(`--shared-fs`, config `run.shared_fs: true`: NFS, Lustre, a FUSE-mounted bucket at the same path).
"""
from __future__ import annotations

from typing import Any, Iterable

from uvd.config import BuildConfig
from uvd.errors import ConfigError
from uvd.storage import fs_and_path

_PROCESS_LOCAL = ("memory",)  # visible to one process only: never shareable between nodes


def alive_nodes() -> int:
    """Nodes of the Ray cluster this process is connected to (1 when Ray is not initialised)."""
    import ray

    if not ray.is_initialized():
        return 1
    return sum(1 for n in ray.nodes() if n.get("Alive"))


def _protocols(url: str) -> tuple[str, ...]:
    fs, _ = fs_and_path(url)
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _looks_like_path(value: str) -> bool:
    # A bare word ("train", "derain") is an option value, not a path; load_config makes ./ and ../
    # paths absolute, so a path an input option names has a separator or a scheme.
    return "://" in value or "/" in value


def local_inputs(cfg: BuildConfig) -> list[tuple[str, str]]:
    """(dataset, path) for each input option of `cfg` that names a local file or folder."""
    found = []
    for ds in cfg.datasets:
        for value in _strings(ds.source_args):
            if not _looks_like_path(value):
                continue
            try:
                protocols = _protocols(value)
            except Exception:  # not a URL fsspec knows: the source reports it, not this check
                continue
            if "file" in protocols or "local" in protocols or any(p in _PROCESS_LOCAL for p in protocols):
                found.append((ds.key, value))
    return found


def check_paths_for_cluster(cfg: BuildConfig, out: str, nodes: int, shared_fs: bool) -> None:
    """Raise ConfigError when a cluster of `nodes` nodes could not see the output or an input."""
    if nodes <= 1:
        return
    problems = []
    out_protocols = _protocols(out)
    if any(p in _PROCESS_LOCAL for p in out_protocols):
        problems.append(f"output {out} lives in one process; use object storage (s3://, gs://)")
    elif not shared_fs and ("file" in out_protocols or "local" in out_protocols):
        problems.append(f"output {out} is a local path")
    for ds, path in local_inputs(cfg):
        if any(p in _PROCESS_LOCAL for p in _protocols(path)):
            problems.append(f"dataset {ds}: input {path} lives in one process")
        elif not shared_fs:
            problems.append(f"dataset {ds}: input {path} is a local path")
    if problems:
        raise ConfigError(
            f"the Ray cluster has {nodes} nodes, and each must see the output and the inputs:\n  "
            + "\n  ".join(problems)
            + "\nput them on object storage (s3://, gs://), or, when these local paths are one filesystem "
              "mounted at the same place on every node (NFS, Lustre, ...), say so with --shared-fs "
              "(config: run.shared_fs: true)")
