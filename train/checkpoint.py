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
import logging
import re
import time
import warnings
from concurrent.futures import Future
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

from uvd import storage

log = logging.getLogger(__name__)

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


def _folders(out: str) -> dict[int, set[str]]:
    """Each step folder's file names, from one listing of the checkpoints folder (not a probe each)."""
    found: dict[int, set[str]] = {}
    for rel in storage.list_names(checkpoint_dir(out)):
        folder, _, name = rel.partition("/")
        m = _STEP_DIR.fullmatch(folder)
        if m and name:
            found.setdefault(int(m.group(1)), set()).add(name)
    return found


def _complete(names: set[str]) -> bool:
    return ".metadata" in names and TRAIN_STATE in names


def steps_saved(out: str) -> list[int]:
    """Steps with a complete checkpoint folder (DCP's .metadata and train_state.json present), sorted."""
    return sorted(s for s, names in _folders(out).items() if _complete(names))


class AmbiguousCheckpoints(ValueError):
    """The run folder holds checkpoints, but which one to resume from cannot be told safely."""


def _pointer(out: str) -> str | None:
    pointer = storage.join(checkpoint_dir(out), LATEST)
    fs, path = storage.fs_and_path(pointer)
    try:
        with fs.open(path, "rb") as f:
            return f.read().decode(errors="replace").strip()
    except FileNotFoundError:
        return None


def latest(out: str) -> str | None:
    """The checkpoint folder a run resumes from, or None when it has no checkpoint at all.

    The `latest` pointer when it names a complete folder (so a user may rewind it by hand). When it
    is missing, or names a folder that is missing or incomplete (a lost object, a copy that left it
    behind), the newest complete folder: never None over existing checkpoints, since a start from
    step 0 would log over and prune the run's real progress. Refuses (AmbiguousCheckpoints) where
    no folder can be chosen safely: a pointer naming something that is not a step folder, one
    naming a folder when no complete one exists, or a folder newer than the choice that has DCP's
    metadata but no train_state.json (damaged: only a person can say whether it counts).
    """
    name = _pointer(out)
    if name is not None and name.endswith(".pt"):  # never silently start over on top of an older run
        raise ValueError(f"{out}: its checkpoints are single .pt files of an earlier version of the trainer; "
                         "sharded (DCP) checkpoints replaced them: train into a new run folder")
    folders = _folders(out)
    complete = sorted(s for s, names in folders.items() if _complete(names))
    how = "run `uvd train … --restart` to move the old checkpoints aside and start over, or fix the folder"
    if name is not None:
        m = _STEP_DIR.fullmatch(name)
        if not m:
            raise AmbiguousCheckpoints(f"{checkpoint_dir(out)}/{LATEST} names {name[:80]!r}, not a step-NNNNNNNN "
                                       f"folder (complete checkpoints: {complete}); {how}")
        if int(m.group(1)) in complete:
            return checkpoint_url(out, int(m.group(1)))
        if not complete:
            raise AmbiguousCheckpoints(f"{checkpoint_dir(out)}/{LATEST} names {name}, which is "
                                       f"{'incomplete' if int(m.group(1)) in folders else 'missing'}, and no "
                                       f"complete checkpoint is left; {how}")
    if not complete:
        return None
    newest = complete[-1]
    damaged = sorted(s for s, names in folders.items() if s > newest and ".metadata" in names and not _complete(names))
    if damaged:
        raise AmbiguousCheckpoints(f"{checkpoint_dir(out)}: step(s) {damaged} have DCP metadata but no {TRAIN_STATE}, "
                                   f"newer than the newest complete step {newest}; {how}")
    log.warning(f"train: {checkpoint_dir(out)}/{LATEST} is {'missing' if name is None else f'{name}, not complete'}; "
                f"using the newest complete checkpoint, step {newest}")
    return checkpoint_url(out, newest)


def move_aside(out: str) -> str | None:
    """`--restart`: the run's checkpoints, log and config go to `<out>/before-restart-<UTC time>/`
    (nothing is deleted); returns that folder, or None when there was nothing to move."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = storage.join(out, f"before-restart-{stamp}")
    fs, _ = storage.fs_and_path(out)
    moved = False
    for name in ("checkpoints", "log.jsonl", "config.json"):
        src = storage.join(out, name)
        if storage.exists(src):
            _, src_path = storage.fs_and_path(src)
            _, dst_path = storage.fs_and_path(storage.join(aside, name))
            fs.makedirs(storage.fs_and_path(aside)[1], exist_ok=True)
            fs.mv(src_path, dst_path, recursive=True)
            moved = True
    return aside if moved else None


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
        import torch.distributed.checkpoint as dcp

        self.wait()
        url = checkpoint_url(self.out, step)
        if train_state is not None:
            # Rewriting a step that exists (a rewound pointer, a step a killed run saved): its old
            # .metadata goes first, so a kill mid-rewrite leaves an incomplete folder, not old
            # metadata over new shards. Rank 0 writes .metadata only after every rank's shards.
            meta = storage.join(url, ".metadata")
            if storage.exists(meta):
                fs, path = storage.fs_and_path(meta)
                fs.rm(path)
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
        self._free_stager()

    def close_after_error(self, timeout_s: float = 600.0) -> None:
        """When training raised: an async save in flight that finishes is still recorded (pointer,
        pruning); one that fails or hangs is left unrecorded. Never raises over the first error, and
        never waits at a barrier: the other ranks may be gone."""
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                fut, step = pending
                try:
                    fut.result(timeout=timeout_s)
                except Exception as err:  # noqa: BLE001 - the training error is the one to report
                    log.warning(f"train: the checkpoint of step {step} did not finish ({err!r}); not recorded")
                    return
                # On rank 0 the future ends after DCP's finish(), which wrote .metadata once every
                # rank's shards were stored: the folder is whole, the pointer may move.
                if not dist.is_initialized() or dist.get_rank() == 0:
                    self._record(step)
                    log.info(f"train: checkpoint of step {step} finished after the error; recorded")
        finally:
            with contextlib.suppress(Exception):
                self._free_stager()

    def _free_stager(self) -> None:
        if self._stager is not None:
            self._stager.close()
            self._stager = None

    def _commit(self, step: int) -> None:
        main = not dist.is_initialized() or dist.get_rank() == 0
        if main:  # rank 0's .metadata is DCP's last write: every rank's shards are on storage
            self._record(step)
        if dist.is_initialized():
            dist.barrier(group=self._group)

    def _record(self, step: int) -> None:
        storage.write_bytes(storage.join(checkpoint_dir(self.out), LATEST), f"step-{step:08d}\n".encode())
        self._prune(step)

    def _prune(self, newest: int) -> None:
        """Keep the `keep` newest complete folders up to `newest` (the save just recorded); remove
        older ones and older incomplete leftovers. Folders after `newest` are never touched: a run
        resumed from an earlier step (a rewound or lost pointer) must not destroy later progress."""
        folders = _folders(self.out)
        complete = sorted(s for s, names in folders.items() if s <= newest and _complete(names))
        keep = set(complete[-self.keep:]) | {newest}
        fs, _ = storage.fs_and_path(checkpoint_dir(self.out))
        for s in sorted(folders):
            if s < newest and s not in keep:
                fs.rm(storage.fs_and_path(checkpoint_url(self.out, s))[1], recursive=True)


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
