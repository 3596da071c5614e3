"""The token stream: mixture → end-of-sentence → packing into rows of seq_len + 1, per consumer.

A *consumer* is one DataLoader worker of one rank (C = world_size × workers of them). For each
mixture group, the pieces of epoch e are permuted by (seed, group, e) and the endless sequence
epoch 0, epoch 1, … is dealt round-robin: piece number k goes to consumer k mod C. So in every
epoch each sentence goes to exactly one consumer, without any coordination, and a consumer
whose group has fewer pieces than C simply takes its turn in a later epoch. Inside a consumer,
`open_pieces` pieces are read round-robin (rows permuted inside each piece) as a local shuffle,
and groups are interleaved by deficit: the next sentence comes from the group furthest below
its share of tokens, which holds the configured proportions to within one sentence.

Everything is a function of (seed, files, C, consumer), and a consumer's whole position is a
small dict (`state_dict`), so a run resumes mid-epoch exactly. A run that resumes with another
number of consumers re-splits the global position (stream_resplit): pieces in flight or not yet
opened are dealt again, so over the whole run no sentence is repeated or skipped within an epoch.
Then a consumer first works through its `pending` row ranges (piece, from, to: positions in the
piece's row order) and after them takes piece `base + consumer + t·C` of the endless sequence.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from train.config import CODEBOOK_SIZE, DataConfig
from train.shards_index import Piece, TokenIndex, build_index
from uvd.shards import open_parquet

STATE_VERSION = 1


def _group_seed(group: str) -> int:
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SentenceRef:
    """Where a sentence came from: enough to check coverage (tests) and to debug a batch."""
    group: str
    epoch: int
    shard: int
    row_group: int
    row: int


class RowGroupCache:
    """The last few decoded token row groups: (values uint16, offsets) per (shard, row group)."""

    def __init__(self, shards: list[str], size: int) -> None:
        self.shards, self.size = shards, size
        self._cache: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, shard: int, rg: int, codebook: int) -> tuple[np.ndarray, np.ndarray]:
        key = (shard, rg)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        with open_parquet(self.shards[shard]) as pf:
            col = pf.read_row_group(rg, columns=["tokens"], use_threads=False).column("tokens").combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.values.to_numpy(zero_copy_only=False)
        if len(values) and int(values[offsets[0]:offsets[-1]].max()) >= codebook:
            raise ValueError(f"{self.shards[shard]}: row group {rg} has token ids >= codebook size {codebook}")
        self._cache[key] = (values, offsets)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return values, offsets


class GroupStream:
    """One consumer's endless sentence sequence from one mixture group."""

    def __init__(self, group: str, pieces: list[Piece], seed: int, consumer: int, consumers: int,
                 open_pieces: int, cache: RowGroupCache, codebook: int) -> None:
        self.group, self.pieces, self.seed = group, pieces, seed
        self.consumer, self.consumers, self.n_open = consumer, consumers, open_pieces
        self.cache, self.codebook = cache, codebook
        self._gseed = _group_seed(group)
        self._epoch_perm: dict[int, np.ndarray] = {}
        self.taken = 0  # fresh pieces this consumer has opened so far
        self.slots: list[list[Any]] = []  # [global piece number, cursor, row order]
        self.rr = 0
        self.pending: list[list[int]] = []  # [piece number, cursor, stop] given by a re-split, taken first
        self.base = 0  # this consumer's fresh pieces are base + consumer + t·consumers

    def _piece_at(self, k: int) -> tuple[int, Piece]:
        """The k-th piece of the endless epoch-after-epoch sequence, with its epoch."""
        n = len(self.pieces)
        epoch, i = divmod(k, n)
        perm = self._epoch_perm.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, self._gseed, epoch]).permutation(n)
            self._epoch_perm = {epoch: perm}  # epochs are visited in order: keep one
        return epoch, self.pieces[int(perm[i])]

    def _open(self, k: int, cursor: int = 0, stop: int = -1) -> list[Any]:
        """A slot reading piece k's rows (in its seeded order) from `cursor` to `stop` (-1: the end)."""
        epoch, piece = self._piece_at(k)
        order = np.random.default_rng([self.seed, self._gseed, epoch, k]).permutation(piece.row_numbers())
        if stop >= 0:
            order = order[:stop]
        return [k, cursor, order, epoch, piece, stop]

    def piece_rows(self, k: int) -> int:
        return len(self._piece_at(k)[1])

    def _fill(self) -> None:
        while len(self.slots) < self.n_open:
            if self.pending:
                self.slots.append(self._open(*self.pending.pop(0)))
                continue
            k = self.base + self.consumer + self.taken * self.consumers
            self.taken += 1
            self.slots.append(self._open(k))

    def next(self) -> tuple[np.ndarray, SentenceRef]:
        self._fill()
        self.rr %= len(self.slots)
        slot = self.slots[self.rr]
        k, cursor, order, epoch, piece, _ = slot
        row = int(order[cursor])
        slot[1] = cursor + 1
        if slot[1] >= len(order):
            self.slots.pop(self.rr)  # done: a new piece joins at the end of the round-robin
        else:
            self.rr += 1
        values, offsets = self.cache.get(piece.shard, piece.row_group, self.codebook)
        tokens = values[offsets[row]:offsets[row + 1]]
        return tokens, SentenceRef(self.group, epoch, piece.shard, piece.row_group, row)

    def state_dict(self) -> dict[str, Any]:
        return {"taken": self.taken, "rr": self.rr, "slots": [[s[0], s[1], s[5]] for s in self.slots],
                "pending": [list(p) for p in self.pending], "base": self.base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.taken, self.rr = int(state["taken"]), int(state["rr"])
        self.slots = [self._open(*(int(v) for v in s)) for s in state["slots"]]
        self.pending = [[int(v) for v in p] for p in state.get("pending", [])]
        self.base = int(state.get("base", 0))


class SentenceStream:
    """One consumer's sentences, groups interleaved to hold the mixture's token shares."""

    def __init__(self, index: TokenIndex, cfg: DataConfig, seed: int, consumer: int, consumers: int,
                 codebook: int = CODEBOOK_SIZE) -> None:
        if not 0 <= consumer < consumers:
            raise ValueError(f"consumer {consumer} not in [0, {consumers})")
        self.fingerprint = index.fingerprint
        self.weights = resolve_weights(index, cfg)
        cache = RowGroupCache(index.shards, cfg.open_pieces * max(1, len(self.weights)) + 1)
        self.groups = {g: GroupStream(g, index.groups[g], seed, consumer, consumers, cfg.open_pieces, cache, codebook)
                       for g in self.weights}
        self.emitted = {g: 0 for g in self.weights}  # tokens, end-of-sentence included
        self._names = list(self.weights)
        self._w = np.array([self.weights[g] for g in self._names], np.float64)

    def next(self) -> tuple[np.ndarray, SentenceRef]:
        if len(self._names) == 1:
            g = self._names[0]
        else:
            done = np.array([self.emitted[g] for g in self._names], np.float64)
            g = self._names[int(np.argmin(done / self._w))]
        tokens, ref = self.groups[g].next()
        self.emitted[g] += len(tokens) + 1
        return tokens, ref

    def state_dict(self) -> dict[str, Any]:
        return {"groups": {g: s.state_dict() for g, s in self.groups.items()}, "emitted": dict(self.emitted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["groups"]) != set(self.groups):
            raise ValueError(f"stream state has groups {sorted(state['groups'])}, config gives {sorted(self.groups)}")
        for g, s in state["groups"].items():
            self.groups[g].load_state_dict(s)
        self.emitted = {g: int(v) for g, v in state["emitted"].items()}


def resolve_weights(index: TokenIndex, cfg: DataConfig) -> dict[str, float]:
    """Each group's share of tokens (normalised); groups of weight 0 are left out."""
    present = sorted(g for g, rows in index.rows.items() if rows > 0)
    if cfg.mixture is None:
        return {g: 1.0 for g in present}
    mix = cfg.mixture
    unknown = sorted(set(mix.weights) - set(present))
    if unknown:
        raise ValueError(f"mixture names groups not in the data: {unknown}; present {mix.by} groups: {present}")
    missing = [g for g in present if g not in mix.weights]
    if missing and mix.default is None:
        raise ValueError(f"mixture gives no weight to {mix.by} groups {missing}; add them or set mixture.default")
    weights = {g: float(mix.weights.get(g, mix.default or 0.0)) for g in present}
    weights = {g: w for g, w in weights.items() if w > 0}
    if not weights:
        raise ValueError("mixture: every group has weight 0")
    total = sum(weights.values())
    return {g: w / total for g, w in weights.items()}


class Packer:
    """Sentences + end-of-sentence into rows of seq_len + 1 tokens.

    Concatenated (default): the token stream is cut into rows that overlap by one token (a row's
    last token is the next row's first), so every token is a target exactly once and no padding
    is spent. Aligned: every row starts at a sentence start; a sentence that does not fit in
    what is left of the row starts the next one (the rest is padding, ignored by the loss); a
    sentence longer than a row continues in the next row.
    """

    def __init__(self, sentences: SentenceStream, seq_len: int, eos_id: int, pad_id: int, align: bool) -> None:
        self.sentences, self.width = sentences, seq_len + 1
        self.eos, self.pad, self.align = eos_id, pad_id, align
        self.buf = np.empty(self.width, np.int32)
        self.fill = 0
        self.carry = np.empty(0, np.uint16)  # the rest of the sentence being packed
        self.carry_eos = False
        self.rows = 0
        # Token runs (tokens, end-of-sentence after them?) another consumer left unpacked when the
        # run was re-split to fewer consumers: packed before any new sentence.
        self.queue: list[tuple[np.ndarray, bool]] = []

    def _take_sentence(self) -> None:
        if self.queue:
            self.carry, self.carry_eos = self.queue.pop(0)
            return
        tokens, _ = self.sentences.next()
        self.carry, self.carry_eos = tokens, True

    def next_row(self, out: np.ndarray) -> None:
        w, buf = self.width, self.buf
        while True:
            if not len(self.carry) and not self.carry_eos:
                self._take_sentence()
                if self.align and self.fill and self.fill + len(self.carry) + 1 > w:
                    buf[self.fill:] = self.pad  # does not fit: it starts the next row
                    self.fill = w
            if self.fill < w:
                n = min(len(self.carry), w - self.fill)
                buf[self.fill:self.fill + n] = self.carry[:n]
                self.fill += n
                self.carry = self.carry[n:]
                if not len(self.carry) and self.carry_eos and self.fill < w:
                    buf[self.fill] = self.eos
                    self.fill += 1
                    self.carry_eos = False
            if self.fill == w:
                out[:] = buf
                self.rows += 1
                if self.align:
                    self.fill = 0
                else:
                    buf[0] = buf[w - 1]  # the one-token overlap
                    self.fill = 1
                return

    def state_dict(self) -> dict[str, Any]:
        return {"buf": self.buf[:self.fill].copy(), "carry": np.asarray(self.carry, np.uint16).copy(),
                "carry_eos": self.carry_eos, "rows": self.rows, "sentences": self.sentences.state_dict(),
                "queue": [[np.asarray(t, np.int32).copy(), e] for t, e in self.queue]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buf = np.asarray(state["buf"], np.int32)
        self.buf[:len(buf)] = buf
        self.fill = len(buf)
        self.carry = np.asarray(state["carry"], np.uint16)
        self.carry_eos = bool(state["carry_eos"])
        self.rows = int(state["rows"])
        self.queue = [(np.asarray(t, np.int32), bool(e)) for t, e in state.get("queue", [])]
        self.sentences.load_state_dict(state["sentences"])


def make_packer(index: TokenIndex, cfg: DataConfig, seed: int, consumer: int, consumers: int) -> Packer:
    stream = SentenceStream(index, cfg, seed, consumer, consumers)
    return Packer(stream, cfg.seq_len, cfg.eos_id, cfg.pad_id, cfg.align_sentences)


class TokenDataset(IterableDataset):
    """Endless batches [batch, seq_len + 1] (int32) for one rank; each worker is one consumer."""

    def __init__(self, index: TokenIndex, cfg: DataConfig, seed: int, rank: int, world: int, batch_size: int) -> None:
        self.index, self.cfg, self.seed = index, cfg, seed
        self.rank, self.world, self.batch_size = rank, world, batch_size
        self.worker_offset = 0
        self.states: dict[int, dict[str, Any]] = {}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        local = (wid + self.worker_offset) % workers  # after a resume, worker 0 continues where the turn was
        consumer = self.rank * workers + local
        packer = make_packer(self.index, self.cfg, self.seed, consumer, self.world * workers)
        if local in self.states:
            packer.load_state_dict(self.states[local])
        while True:
            batch = np.empty((self.batch_size, self.cfg.seq_len + 1), np.int32)
            for i in range(self.batch_size):
                packer.next_row(batch[i])
            yield {"tokens": torch.from_numpy(batch), "worker": local, "state": packer.state_dict()}


def _as_is(item: Any) -> Any:
    """No conversion: the default one would turn the stream state's arrays into tensors."""
    return item


def shared_index(cfg: DataConfig, rank: int, world: int) -> TokenIndex:
    """The token index, built once per job: rank 0 builds it and broadcasts it (Arrow IPC) to the
    others, so N ranks cost one listing and one read of the index table, not N."""
    import torch.distributed as dist

    def build() -> TokenIndex:
        return build_index(cfg.tokens, cfg.mixture.by if cfg.mixture else None, cfg.piece_rows)

    if world == 1 or not dist.is_initialized():
        return build()
    box: list[Any] = [None]
    failed: Exception | None = None
    if rank == 0:
        try:
            box[0] = build().to_bytes()
        except Exception as err:  # noqa: BLE001 - every rank ends with rank 0's error; none waits for ever
            failed, box[0] = err, (type(err).__name__, str(err))
    dist.broadcast_object_list(box, src=0)
    if failed is not None:
        raise failed
    if isinstance(box[0], tuple):
        raise (FileNotFoundError if box[0][0] == "FileNotFoundError" else ValueError)(f"rank 0: {box[0][1]}")
    return TokenIndex.from_bytes(box[0])


class TokenLoader:
    """A rank's batches through a DataLoader, with the position of every worker for resuming."""

    def __init__(self, cfg: DataConfig, seed: int, rank: int, world: int, batch_size: int,
                 index: TokenIndex | None = None) -> None:
        self.cfg = cfg
        self.index = index or shared_index(cfg, rank, world)
        if cfg.num_workers > 0:
            self.index.spill()  # workers memory-map it instead of unpickling a copy each
        self.dataset = TokenDataset(self.index, cfg, seed, rank, world, batch_size)
        self.workers = max(1, cfg.num_workers)
        self.meta = {"version": STATE_VERSION, "seed": seed, "world": world, "workers": self.workers,
                     "batch_size": batch_size, "fingerprint": self.index.fingerprint}
        self.next_worker = 0
        self._it: Iterator[dict[str, Any]] | None = None

    def __iter__(self) -> "TokenLoader":
        return self

    def __next__(self) -> torch.Tensor:
        if self._it is None:
            self.dataset.worker_offset = self.next_worker
            workers = self.cfg.num_workers
            # Workers come from a forkserver, not a fork of this process: by now it runs threads
            # (gloo/NCCL, DCP's async writers, fsspec's loop), and a fork copies their locks held:
            # a forked worker died of "double free or corruption" in the test suite.
            loader = DataLoader(self.dataset, batch_size=None, collate_fn=_as_is, num_workers=workers,
                                persistent_workers=workers > 0, prefetch_factor=2 if workers else None,
                                multiprocessing_context="forkserver" if workers else None)
            self._it = iter(loader)
        item = next(self._it)
        self.dataset.states[item["worker"]] = item["state"]
        self.next_worker = (item["worker"] + 1) % self.workers
        return item["tokens"]

    def state_dict(self) -> dict[str, Any]:
        return {**self.meta, "next_worker": self.next_worker, "states": dict(self.dataset.states)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in self.meta.items():
            if state.get(key) != value:
                raise ValueError(f"data state was saved with {key}={state.get(key)!r}, this run has {value!r}")
        self.dataset.states = {int(k): v for k, v in state["states"].items()}
        self.next_worker = int(state["next_worker"])
        self._it = None  # workers restart from the loaded positions

    def load_global_state(self, ranks: list[dict[str, Any]]) -> None:
        """Every saving rank's state_dict → this rank's position: exact when the consumers (ranks ×
        workers) and batch size are the ones saved, else re-split among this run's consumers."""
        mine = self.meta
        if len(ranks) == mine["world"] and all(r.get("workers") == mine["workers"] and
                                               r.get("batch_size") == mine["batch_size"] for r in ranks):
            self.load_state_dict(ranks[self.dataset.rank])
            return
        for key in ("version", "seed", "fingerprint"):
            if ranks[0].get(key) != mine[key]:
                raise ValueError(f"data state was saved with {key}={ranks[0].get(key)!r}, this run has {mine[key]!r}")
        from train.stream_resplit import resplit_consumers

        old_workers = int(ranks[0]["workers"])
        old = [None] * (len(ranks) * old_workers)
        for r, state in enumerate(ranks):
            for local, consumer_state in state["states"].items():
                old[r * old_workers + int(local)] = consumer_state
        sizes = {g: GroupStream(g, self.index.groups[g], mine["seed"], 0, 1, 1, None, CODEBOOK_SIZE).piece_rows
                 for g in resolve_weights(self.index, self.cfg)}
        new = resplit_consumers(old, mine["world"] * self.workers, sizes, overlap=not self.cfg.align_sentences)
        base = self.dataset.rank * self.workers
        self.dataset.states = {w: new[base + w] for w in range(self.workers)}
        self.next_worker = 0
        self._it = None
