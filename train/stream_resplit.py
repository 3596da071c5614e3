"""Re-split the token stream's position when a run resumes with another number of consumers.

The saved position is every old consumer's state (stream.Packer.state_dict). From it follows the
global position of each mixture group: the pieces opened and not finished (with their cursors),
the pieces dealt to a consumer but not yet opened, and the frontier K below which every piece
was dealt. The rows left in those, in piece order, are cut into C' runs of equal length (a
piece may be cut in two: each part is a range of the piece's seeded row order), one per new
consumer, as its `pending` queue; fresh pieces continue from K, dealt `K + consumer + t·C'`.
Every sentence of the endless epoch-after-epoch sequence thus still goes to exactly one
consumer, and the new consumers reach the frontier together, as they would have had the run
never stopped.

What an old consumer had packed but not yet emitted (its partial row and the rest of its
current sentence) is handed to a new consumer as a queued token run, so no token is lost
either; only row boundaries move.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def _fresh_consumer() -> dict[str, Any]:
    return {"taken": 0, "rr": 0, "slots": [], "pending": [], "base": 0}


def resplit_consumers(states: list[dict[str, Any] | None], new_consumers: int,
                      piece_rows: dict[str, Callable[[int], int]], overlap: bool) -> list[dict[str, Any]]:
    """Old consumers' packer states (None: a consumer that never produced) → new consumers' states.

    `piece_rows[group](k)`: the rows of piece k of that group's endless sequence.
    `overlap`: concatenated packing, where a partial row starts with the previous row's last token
    (already a target): that token is not packed again.
    """
    old = len(states)
    out = [{"buf": [], "carry": [], "carry_eos": False, "rows": 0, "queue": [],
            "sentences": {"groups": {}, "emitted": {}}} for _ in range(new_consumers)]
    for g, rows_of in piece_rows.items():
        unfinished: list[tuple[int, int, int]] = []  # piece, from, to (in its row order)
        nexts: list[int] = []
        emitted = 0
        for i, st in enumerate(states):
            sent = (st or {}).get("sentences", {})
            gs = sent.get("groups", {}).get(g) or _fresh_consumer()
            emitted += int(sent.get("emitted", {}).get(g, 0))
            for k, cur, *stop in list(gs["slots"]) + list(gs.get("pending", [])):
                end = int(stop[0]) if stop and int(stop[0]) >= 0 else rows_of(int(k))
                if int(cur) < end:
                    unfinished.append((int(k), int(cur), end))
            nexts.append(int(gs.get("base", 0)) + i + int(gs["taken"]) * old)
        frontier = max(nexts)
        for nxt in nexts:  # dealt to a consumer, not yet opened
            unfinished += [(k, 0, rows_of(k)) for k in range(nxt, frontier, old)]
        unfinished.sort()
        for c, mine in enumerate(_cut_evenly(unfinished, new_consumers)):
            out[c]["sentences"]["groups"][g] = {"taken": 0, "rr": 0, "slots": [], "pending": mine, "base": frontier}
            # Deficit mixing compares groups within a consumer: keep each group's share of the total.
            out[c]["sentences"]["emitted"][g] = emitted // new_consumers
    runs: list[tuple[np.ndarray, np.ndarray, bool]] = []
    for st in states:
        if st is None:
            continue
        buf = np.asarray(st["buf"], np.int32)
        carry = np.asarray(st["carry"], np.int32)
        runs.append((buf, carry, bool(st["carry_eos"])))
        runs += [(np.empty(0, np.int32), np.asarray(t, np.int32), bool(e)) for t, e in st.get("queue", [])]
    for j, (buf, carry, eos) in enumerate(runs):
        target = out[j % new_consumers]
        if not len(target["buf"]) and not len(target["carry"]) and not target["queue"] and j < new_consumers:
            target["buf"], target["carry"], target["carry_eos"] = buf, carry, eos
        else:
            head = buf[1:] if overlap and len(buf) else buf
            target["queue"].append([np.concatenate([head, carry]), eos])
    return out


def _cut_evenly(ranges: list[tuple[int, int, int]], parts: int) -> list[list[list[int]]]:
    """Row ranges (piece, from, to), in order, cut into `parts` runs whose lengths differ by ≤ 1."""
    total = sum(b - a for _, a, b in ranges)
    quotas = [total // parts + (1 if j < total % parts else 0) for j in range(parts)]
    out: list[list[list[int]]] = [[] for _ in range(parts)]
    j = 0
    for k, a, b in ranges:
        while a < b:
            while j < parts - 1 and quotas[j] == 0:
                j += 1
            n = min(b - a, quotas[j]) if j < parts - 1 else b - a
            out[j].append([k, a, a + n])
            quotas[j] -= n
            a += n
    return out
