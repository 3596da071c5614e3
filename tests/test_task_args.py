"""Task options from the config reach the task function (builder_args.task_args)."""
import pytest

from conftest import gradient, jpeg_bytes
from uvd.config import BuildConfig
from uvd.errors import ConfigError
from uvd.records import Item
from uvd.unit import make_builder


def _builder(builder_args):
    cfg = BuildConfig.model_validate({"datasets": [{"name": "e", "source": "image_folder",
                                                    "source_args": {"root": "/"}, "builder": "pairs",
                                                    "builder_args": {"epochs": 1, **builder_args}}]})
    return make_builder(cfg, cfg.datasets[0])


def _edge_pixels(builder) -> int:
    img = gradient(300, 300)
    img[:, 150:] = 255 - img[:, 150:]  # a step in the middle plus soft ramps
    item = Item("a", "e", images=[jpeg_bytes(img)])
    (example,) = [s for s in builder.process(item)] or [None]
    assert example is None  # one item is not yet a sentence of 8 pairs
    (_, group), = builder.group
    return int((group[1][0] > 0).any(axis=2).sum())


def test_edges_thresholds_come_from_the_config():
    loose = _edge_pixels(_builder({"task": "edges", "task_args": {"low": 1, "high": 5}}))
    strict = _edge_pixels(_builder({"task": "edges", "task_args": {"low": 400, "high": 900}}))
    assert loose > strict


def test_unknown_task_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown option"):
        _builder({"task": "edges", "task_args": {"threshold": 3}})
