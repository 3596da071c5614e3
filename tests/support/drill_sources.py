"""A source slow enough that a drill can kill things while units run (imported by Ray workers)."""
from __future__ import annotations

import time
from typing import Any, Iterator

import numpy as np
from pydantic import Field

from uvd.api import Source
from uvd.config import Strict
from uvd.records import Item


class SlowOptions(Strict):
    units: int = Field(8, ge=1)
    items: int = Field(4, ge=1)
    seconds_per_item: float = 0.25


class SlowSource(Source):
    name = "slow"
    Options = SlowOptions

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        return [{"unit": u} for u in range(self.options.units)]

    def read(self, payload: dict[str, Any]) -> Iterator[Item]:
        for i in range(self.options.items):
            time.sleep(self.options.seconds_per_item)
            rng = np.random.default_rng(payload["unit"] * 1000 + i)  # content fixed by the id
            img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
            yield Item(f"u{payload['unit']}-i{i}", self.ctx.dataset, images=[img])
