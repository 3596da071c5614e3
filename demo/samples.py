"""The real sample files bundled with the project (copied from ../shared/data)."""
from __future__ import annotations

from pathlib import Path


def samples_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "sample_data"
    if not here.is_dir():
        raise FileNotFoundError(f"bundled samples not found at {here}")
    return here
