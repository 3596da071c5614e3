"""The worked examples of docs/EXTENDING.md ("A new renderer", "A new annotation task") run as written."""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from uvd.api import BuildContext
from uvd.errors import BadInput
from uvd.records import Item

DOC = Path(__file__).resolve().parent.parent / "docs" / "EXTENDING.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def modules(monkeypatch):
    renderer, task = _blocks()[-2:]
    flow_mod = types.ModuleType("renderers.flow")
    exec(compile(renderer, "EXTENDING.md:renderer", "exec"), flow_mod.__dict__)
    monkeypatch.setitem(sys.modules, "renderers.flow", flow_mod)
    task_mod = types.ModuleType("flow_task")
    exec(compile(task, "EXTENDING.md:task", "exec"), task_mod.__dict__)
    return flow_mod, task_mod


def test_the_flow_renderer_example(modules):
    flow_mod, _ = modules
    right = np.zeros((8, 8, 2), np.float32)
    right[..., 0] = 1
    rgb = flow_mod.render_flow(right)
    assert rgb.shape == (8, 8, 3) and (rgb == rgb[0, 0]).all() and tuple(rgb[0, 0]) == (255, 0, 0)
    assert not flow_mod.render_flow(np.zeros((4, 4, 2), np.float32)).any()


def test_the_flow_task_example(modules):
    _, task_mod = modules
    ctx = BuildContext(dataset="flow")
    photo = np.full((300, 400, 3), 90, np.uint8)
    f = np.zeros((300, 400, 2), np.float32)
    f[:, 200:, 1] = 4.0  # the right half moves down
    (x, xl), (y, yl) = task_mod.flow(Item("a", "flow", images=[photo], annotations={"flow": f}), ctx, None)
    assert x.shape == y.shape == (256, 256, 3) and not xl and yl
    assert not y[:, :100].any() and y[:, 160:].any()  # left half still, right half coloured
    with pytest.raises(BadInput, match="no_annotation"):
        task_mod.flow(Item("b", "flow", images=[photo]), ctx, None)
    with pytest.raises(BadInput, match="size_mismatch"):
        task_mod.flow(Item("c", "flow", images=[photo], annotations={"flow": f[:100]}), ctx, None)
