"""Sharded checkpoints with torch.distributed.checkpoint (DCP), a `latest` pointer written last.

A checkpoint is a folder `<out>/checkpoints/step-NNNNNNNN/`: DCP's shard files (each rank writes
the parts of the model and optimizer state it holds; nothing is gathered on one rank), DCP's
`.metadata` (written by rank 0 once every rank has written), and `train_state.json` (the step,
the config, the global batch, every rank's data-stream position and RNG state). The pointer
`<out>/checkpoints/latest` names the newest complete folder; it moves only after a save has
finished everywhere, so a crash mid-save leaves the previous checkpoint in use. The K newest
complete folders are kept.

Loading goes through DCP too: each rank asks for the tensors (or DTensor shards) its own model
and optimizer hold, and DCP reads just those byte ranges, whatever world size and sharding
(DDP, FSDP2, one process) wrote them. Local folders use DCP's FileSystemWriter/Reader; any other
fsspec URL (s3://, gs://, memory://) its FsspecWriter/Reader.
"""
from __future__ import annotations

import contextlib
import io
import re
import warnings
from concurrent.futures import Future
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

from uvd import storage

LATEST = "latest"
TRAIN_STATE = "train_state.json"
_STEP_DIR = re.compile(r"step-(\d{8})$")


def checkpoint_dir(out: str) -> str:
    return storage.join(out, "checkpoints")


def checkpoint_url(out: str, step: int) -> str:
    return storage.join(checkpoint_dir(out), f"step-{step:08d}")


def plain(obj: Any) -> Any:
    """Arrays and tensors → lists: for the data-stream and RNG state, so that it passes
    all_gather_object and JSON. Not for weights."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


_SINGLE_PROCESS_WARNING = "torch.distributed is disabled"


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    # Without a process group DCP warns on every call that it assumes one process: that is the intent.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_WARNING, category=UserWarning)
        yield


def _quiet_single_process_for_good() -> None:
    # An async save warns from its upload thread, after any `with` around the call has ended.
    warnings.filterwarnings("ignore", message=_SINGLE_PROCESS_WARNING, category=UserWarning)


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def writer(url: str) -> Any:
    from torch.distributed.checkpoint import FileSystemWriter

    if _is_local(url):
        return FileSystemWriter(_local_path(url), single_file_per_rank=True, thread_count=4)
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecWriter

    return FsspecWriter(url, single_file_per_rank=True, thread_count=4)


def reader(url: str) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    if _is_local(url):
        return FileSystemReader(_local_path(url))
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader

    return FsspecReader(url)


def steps_saved(out: str) -> list[int]:
    """Steps with a complete checkpoint folder (DCP's .metadata and train_state.json present), sorted."""
    found = []
    for path in storage.glob(checkpoint_dir(out), "step-*"):
        m = _STEP_DIR.search(path.rstrip("/"))
        if m and storage.exists(storage.join(checkpoint_url(out, int(m.group(1))), ".metadata")) \
                and storage.exists(storage.join(checkpoint_url(out, int(m.group(1))), TRAIN_STATE)):
            found.append(int(m.group(1)))
    return sorted(found)


def latest(out: str) -> str | None:
    """The newest complete checkpoint folder of a run, or None."""
    pointer = storage.join(checkpoint_dir(out), LATEST)
    if not storage.exists(pointer):
        return None
    fs, path = storage.fs_and_path(pointer)
    with fs.open(path, "rb") as f:
        name = f.read().decode().strip()
    if name.endswith(".pt"):  # never silently start over on top of an older run
        raise ValueError(f"{out}: its checkpoints are single .pt files of an earlier version of the trainer; "
                         "sharded (DCP) checkpoints replaced them: train into a new run folder")
    url = storage.join(checkpoint_dir(out), name)
    return url if storage.exists(storage.join(url, ".metadata")) else None


def resolve(url: str, step: int | None = None) -> str:
    """A checkpoint folder from a run folder (its latest, or `step`) or a checkpoint folder itself."""
    if storage.exists(storage.join(url, ".metadata")):
        return url
    if step is not None:
        found = checkpoint_url(url, step)
        if not storage.exists(storage.join(found, ".metadata")):
            raise FileNotFoundError(f"no complete checkpoint for step {step} in {url} (have {steps_saved(url)})")
        return found
    found = latest(url)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {url}")
    return found


def read_train_state(ckpt: str) -> dict[str, Any]:
    return storage.read_json(storage.join(ckpt, TRAIN_STATE))


class Checkpointer:
    """Saves (optionally asynchronously) and commits: pointer, then pruning, once a save is whole."""

    def __init__(self, out: str, keep: int, async_save: bool = False) -> None:
        self.out, self.keep, self.async_save = out, keep, async_save
        self._pending: tuple[Future, int] | None = None
        self._group: Any = None
        self._stager: Any = None
        self.last_blocking_s = 0.0

    def _staging(self) -> Any:
        """One stager for the whole run: its CPU copy of the state (pinned on CUDA) is allocated at
        the first async save and refilled in place at the next ones. DCP's default (the writer as
        stager) allocates a fresh pageable copy at every save: 7.78 s of blocking for the 1B state
        on an H200. Staging stays synchronous: save() returns once the copy is whole, so the next
        optimizer step cannot change what is being written. (save() waits for the previous upload
        first, so a buffer is never refilled while it is written.)"""
        if self._stager is None:
            from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

            cuda = torch.cuda.is_available()
            self._stager = DefaultStager(StagingOptions(use_pinned_memory=cuda, use_shared_memory=False,
                                                        use_async_staging=False, use_non_blocking_copy=cuda))
        return self._stager

    def _process_group(self) -> Any:
        # Async saves run DCP's collectives from a background thread: on a group of their own, so
        # they never interleave with the training step's all-reduces (DCP's advice).
        if not self.async_save or not dist.is_initialized():
            return None
        if self._group is None:
            self._group = dist.new_group(backend="gloo")
        return self._group

    def save(self, step: int, app_state: dict[str, Any], train_state: dict[str, Any] | None) -> str:
        """Every rank calls this (collective). `train_state` is written by the rank that passes it."""
        import time

        import torch.distributed.checkpoint as dcp

        self.wait()
        url = checkpoint_url(self.out, step)
        if train_state is not None:
            storage.write_json(storage.join(url, TRAIN_STATE), train_state)
        t = time.perf_counter()
        if self.async_save:
            if not dist.is_initialized():
                _quiet_single_process_for_good()
            with _quiet_single_process():
                res = dcp.async_save(app_state, storage_writer=writer(url), process_group=self._process_group(),
                                     async_stager=self._staging())
            fut = getattr(res, "upload_completion", res)  # an AsyncSaveResponse with a stager, else a Future
            self._pending = (fut, step)
            self.last_blocking_s = time.perf_counter() - t
        else:
            with _quiet_single_process():
                dcp.save(app_state, storage_writer=writer(url), no_dist=not dist.is_initialized())
            self.last_blocking_s = time.perf_counter() - t
            self._commit(step)
        return url

    def wait(self) -> None:
        """Finish an async save in flight and commit it."""
        if self._pending is None:
            return
        fut, step = self._pending
        self._pending = None
        fut.result()
        self._commit(step)

    def close(self) -> None:
        """Finish what is in flight and free the staging copy."""
        self.wait()
        if self._stager is not None:
            self._stager.close()
            self._stager = None

    def _commit(self, step: int) -> None:
        main = not dist.is_initialized() or dist.get_rank() == 0
        if main:  # rank 0's .metadata is DCP's last write: every rank's shards are on storage
            storage.write_bytes(storage.join(checkpoint_dir(self.out), LATEST), f"step-{step:08d}\n".encode())
            self._prune(step)
        if dist.is_initialized():
            dist.barrier(group=self._group)

    def _prune(self, newest: int) -> None:
        fs, _ = storage.fs_and_path(checkpoint_dir(self.out))
        complete = [s for s in steps_saved(self.out) if s <= newest]
        keep = set(complete[-self.keep:])
        for path in storage.glob(checkpoint_dir(self.out), "step-*"):
            m = _STEP_DIR.search(path.rstrip("/"))
            if m and int(m.group(1)) not in keep and int(m.group(1)) != newest:
                fs.rm(path, recursive=True)


def load_into(ckpt: str, app_state: dict[str, Any]) -> None:
    """Fill `app_state` (tensors, DTensors or Stateful objects) in place from a checkpoint folder."""
    import torch.distributed.checkpoint as dcp

    with _quiet_single_process():
        dcp.load(app_state, storage_reader=reader(ckpt), no_dist=not dist.is_initialized())


def load_model_weights(url: str, model: torch.nn.Module, step: int | None = None) -> dict[str, Any]:
    """One process: a run's (or a checkpoint folder's) model weights into `model`; returns train_state."""
    ckpt = resolve(url, step)
    state = {"model": model.state_dict()}
    load_into(ckpt, state)
    model.load_state_dict(state["model"])
    return read_train_state(ckpt)


def load_full(url: str, step: int | None = None) -> dict[str, Any]:
    """One process: the whole checkpoint in memory, full tensors: {"model", "optim", "train_state"}
    (DCP's dcp_to_torch_save does the same for local folders only). For small models and tests."""
    # What dcp_to_torch_save does, with our reader (so any fsspec URL works): dcp.load only fills
    # keys the caller names, the private loader with the empty-dict planner reads everything.
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    ckpt = resolve(url, step)
    state: dict[str, Any] = {}
    _load_state_dict(state, storage_reader=reader(ckpt), planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    state["train_state"] = read_train_state(ckpt)
    return state


def to_single_file(url: str, out_file: str, step: int | None = None) -> str:
    """A checkpoint as one torch.save file (see load_full), loadable with torch.load(weights_only=True)."""
    state = load_full(url, step)
    buf = io.BytesIO()
    torch.save(state, buf)
    storage.write_bytes(out_file, buf.getvalue())
    return out_file
