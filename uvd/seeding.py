"""All randomness comes from generators seeded by (build seed, source, item id): never by order."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hex digest of a JSON rendering of the parts: the same on every machine and Python."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def rng_for(seed: int, source: str, item_id: str, *extra: Any) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps([seed, source, item_id, *extra], default=str).encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def sentence_id(source: str, original_ids: list[str], recipe: dict[str, Any], seed: int) -> str:
    return stable_hash(source, original_ids, recipe, seed, length=24)
