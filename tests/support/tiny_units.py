"""A source of many tiny units (for control-plane tests and benchmarks/bench_scale.py).

Config: `source: tests.support.tiny_units:TinySource`, `source_args: {units: N, items: k}`.
Each item is an 8×8 grey image (cheap to normalise and encode); `fail: true` makes every item
fail at read, so a unit costs only its control plane.
"""
from __future__ import annotations

from typing import Any, Iterator, Union

import numpy as np

from uvd.api import Source
from uvd.config import Strict
from uvd.records import Failed, Item


class TinyOptions(Strict):
    units: int = 10
    items: int = 1
    fail: bool = False
    crash_unit: int = -1  # this unit raises after its items were read: a crash halfway through a unit


class TinySource(Source):
    name = "tiny"
    Options = TinyOptions

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        return [{"u": i} for i in range(self.options.units)]

    def read(self, payload: dict[str, Any]) -> Iterator[Union[Item, Failed]]:
        for j in range(self.options.items):
            item_id = f"{payload['u']:07d}-{j}"
            if self.options.fail:
                yield Failed(item_id, "io: tiny source fails on purpose")
            else:
                yield Item(item_id, self.ctx.dataset, images=[np.full((8, 8, 3), (payload["u"] * 7 + j) % 256, np.uint8)])
        if payload["u"] == self.options.crash_unit:
            raise RuntimeError("disk on fire")


def tiny_config(out: str, units: int, datasets: int = 1, items: int = 1, fail: bool = False, crash_unit: int = -1,
                **run: Any) -> dict[str, Any]:
    """A build config of `datasets` datasets of `units` tiny units each (as a dict for BuildConfig)."""
    return {"out": out, "seed": 0, "run": run, "datasets": [
        {"name": f"tiny{d}", "source": "tests.support.tiny_units:TinySource",
         "source_args": {"units": units, "items": items, "fail": fail, "crash_unit": crash_unit},
         "builder": "single"}
        for d in range(datasets)]}
