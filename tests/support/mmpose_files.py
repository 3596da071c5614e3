"""MMPose's dataset configs, read as files (importing mmpose needs mmcv + mmengine, which we lack)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def mmpose_configs() -> Path:
    """The installed mmpose's `configs` folder; skips the test when mmpose or its configs are absent."""
    spec = importlib.util.find_spec("mmpose")  # locate only
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mmpose is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    path = next((p for p in (root / ".mim" / "configs", root.parent / "configs")
                 if (p / "_base_" / "datasets" / "coco_openpose.py").is_file()), None)
    if path is None:
        pytest.skip("mmpose is installed without its configs")
    return path


def read_config(path: Path) -> dict:
    """A config file's top-level names (they are plain Python literals)."""
    ns: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    return ns
