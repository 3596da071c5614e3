"""The labeler: local expert models (state dict + registered architecture, or TorchScript) that
pseudo-label photos with depth, normals, segmentation or keypoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from renderers.labeler import Labeler, conv_head, load_labeler
from renderers.palette import PALETTE
from sentence_builders import generated_tasks as gt
from uvd.api import BuildContext
from uvd.errors import ConfigError
from uvd.records import Item

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def _photo() -> np.ndarray:
    return BuildContext(dataset="x").photo((SAMPLES / "images" / "389_535.jpg").read_bytes())


@pytest.fixture
def saved_heads(tmp_path: Path) -> dict[int, Path]:
    torch.manual_seed(0)
    paths = {}
    for c in (1, 3, 5):
        p = tmp_path / f"head{c}.pt"
        torch.save(conv_head(out_channels=c, hidden=4).state_dict(), p)
        paths[c] = p
    return paths


def test_state_dict_labelers_give_the_right_shapes(saved_heads):
    img = _photo()
    depth = Labeler.load(str(saved_heads[1]), "depth", "conv_head", {"out_channels": 1, "hidden": 4})(img)
    assert depth.shape == (256, 256) and depth.dtype == np.float32 and np.isfinite(depth).all()
    normals = Labeler.load(str(saved_heads[3]), "normals", "conv_head", {"out_channels": 3, "hidden": 4})(img)
    assert normals.shape == (256, 256, 3) and np.allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-4)
    seg = Labeler.load(str(saved_heads[5]), "segmentation", "conv_head", {"out_channels": 5, "hidden": 4})
    labels = seg(img)
    assert labels.shape == (256, 256) and labels.dtype == np.int32 and 0 <= labels.min() <= labels.max() < 5
    both = seg.predict([img, img[::-1].copy()])
    assert len(both) == 2 and (both[0] == labels).all()


def test_safetensors_weights_load_too(tmp_path):
    from safetensors.torch import save_file
    m = conv_head(out_channels=1, hidden=4)
    save_file(m.state_dict(), str(tmp_path / "d.safetensors"))
    lab = Labeler.load(str(tmp_path / "d.safetensors"), "depth", "conv_head", {"out_channels": 1, "hidden": 4})
    x = torch.from_numpy(_photo()).permute(2, 0, 1)[None].float() / 255
    assert np.allclose(lab(_photo()), m.eval()(x)[0, 0].detach().numpy(), atol=1e-5)


class PeakHeatmaps(nn.Module):
    """Two keypoint heatmaps at 1/4 resolution with their peaks at fixed cells."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        hm = torch.zeros(n, 2, h // 4, w // 4)
        hm[:, 0, 10, 20] = 1.0
        hm[:, 1, 50, 5] = 0.5
        return hm


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.13 deprecates TorchScript; still loadable
def test_torchscript_keypoint_model_and_its_rendering(tmp_path):
    path = tmp_path / "kp.ts"
    torch.jit.script(PeakHeatmaps()).save(str(path))
    kp = Labeler.load(str(path), "keypoints")(_photo())
    assert kp.shape == (2, 3)
    assert np.allclose(kp[0], [20 * 4 + 1.5, 10 * 4 + 1.5, 1.0]) and np.allclose(kp[1], [5 * 4 + 1.5, 50 * 4 + 1.5, 0.5])
    canvas = gt.render_keypoints(kp, 256, 256)
    assert (canvas[41, 81] == PALETTE[1]).all() and (canvas[201, 21] == PALETTE[2]).all() and canvas[128, 128].sum() == 0


def test_exported_program_loads_without_an_architecture(tmp_path):
    m = conv_head(out_channels=3, hidden=4).eval()
    auto = torch.export.Dim.AUTO
    ep = torch.export.export(m, (torch.zeros(2, 3, 64, 64),), dynamic_shapes=({0: auto, 2: auto, 3: auto},))
    torch.export.save(ep, str(tmp_path / "normals.pt2"))
    n = Labeler.load(str(tmp_path / "normals.pt2"), "normals")(_photo())
    assert n.shape == (256, 256, 3) and np.allclose(np.linalg.norm(n, axis=-1), 1, atol=1e-4)


def test_missing_or_wrong_weights_are_refused_clearly(tmp_path, saved_heads):
    with pytest.raises(ConfigError, match="model file does not exist: .*nope.pt"):
        Labeler.load(str(tmp_path / "nope.pt"), "depth", "conv_head", {"out_channels": 1})
    with pytest.raises(ConfigError, match="not a TorchScript archive"):
        Labeler.load(str(saved_heads[1]), "depth")
    with pytest.raises(ConfigError, match="does not fit architecture 'conv_head'"):
        Labeler.load(str(saved_heads[1]), "depth", "conv_head", {"out_channels": 3, "hidden": 4})
    with pytest.raises(ConfigError, match="unknown architecture"):
        Labeler.load(str(saved_heads[1]), "depth", "resnet9000")
    with pytest.raises(ConfigError, match="unknown kind"):
        Labeler.load(str(saved_heads[1]), "optical_flow", "conv_head", {"out_channels": 1, "hidden": 4})
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ConfigError, match="not a loadable state dict"):
        Labeler.load(str(tmp_path / "junk.pt"), "depth", "conv_head", {"out_channels": 1})


def test_pseudo_label_task_renders_like_ground_truth_and_is_deterministic(saved_heads):
    ctx = BuildContext(dataset="pl")
    item = Item("p", "pl", images=[(SAMPLES / "images" / "389_535.jpg").read_bytes()])
    kw = {"model": str(saved_heads[5]), "kind": "segmentation", "arch": "conv_head",
          "arch_args": {"out_channels": 5, "hidden": 4}}
    (x, xl), (y, yl) = gt.pseudo_label(item, ctx, np.random.default_rng(0), **kw)
    assert (x == _photo()).all() and not xl and yl and y.shape == (256, 256, 3)
    assert {tuple(c) for c in y.reshape(-1, 3)} <= {tuple(PALETTE[i]) for i in range(1, 6)}
    (_, _), (y2, _) = gt.pseudo_label(item, ctx, np.random.default_rng(1), **kw)
    assert (y == y2).all()
    assert load_labeler(kw["model"], "segmentation", "conv_head", kw["arch_args"]) is \
        load_labeler(kw["model"], "segmentation", "conv_head", kw["arch_args"])  # loaded once per process
    kw_depth = {**kw, "model": str(saved_heads[1]), "kind": "depth", "arch_args": {"out_channels": 1, "hidden": 4}}
    (_, _), (d, _) = gt.pseudo_label(item, ctx, np.random.default_rng(0), **kw_depth)
    # LVM's rendering (Prismer's min-max of disparity) by default; ground truth's (far = grey 32) on request
    assert (d[..., 0] == d[..., 1]).all() and d.max() == 255 and d.min() == 0
    (_, _), (g, _) = gt.pseudo_label(item, ctx, np.random.default_rng(0), **kw_depth, render="uvd")
    assert (g[..., 0] == g[..., 1]).all() and g.max() == 255 and g.min() == 32
    with pytest.raises(ConfigError, match="give `model`"):
        gt.pseudo_label(item, ctx, np.random.default_rng(0))


def test_pseudo_label_command_writes_files_the_dense_sources_read(tmp_path, saved_heads):
    import pyarrow.parquet as pq

    from uvd.cli.pseudo_label_cmd import main
    from uvd.config import BuildConfig
    from uvd.unit import make_source, run_unit

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("123_456.jpg", "456_123.jpg"):
        (photos / "sub" / name).write_bytes((SAMPLES / "images" / name).read_bytes())
    (photos / "broken.jpg").write_bytes(b"no")
    assert main([str(photos), str(tmp_path / "x"), "--model", str(tmp_path / "missing.pt"), "--kind", "depth"]) == 2
    # in-process here; the Ray actor pool runs in test_experts_real_archs.py (slow)
    seg_args = ["--arch", "conv_head", "--arch-args", '{"out_channels": 5, "hidden": 4}', "--no-ray"]
    assert main([str(photos), str(tmp_path / "seg"), "--model", str(saved_heads[5]), "--kind", "segmentation",
                 "--input-size", "96", *seg_args]) == 0
    assert main([str(photos), str(tmp_path / "depth"), "--model", str(saved_heads[1]), "--kind", "depth",
                 "--arch", "conv_head", "--arch-args", '{"out_channels": 1, "hidden": 4}', "--no-ray"]) == 0
    lab = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "seg" / "sub" / "123_456.png"))
    assert lab.shape == (456, 123) and lab.max() < 5
    assert np.load(tmp_path / "depth" / "sub" / "456_123.npy").shape == (123, 456)
    assert not (tmp_path / "seg" / "broken.png").exists()
    for ds in ({"name": "s", "source": "segmentation", "source_args": {
                    "images": str(photos), "labels": str(tmp_path / "seg"), "zero_is_class": True, "num_classes": 5},
                "builder": "pairs", "builder_args": {"task": "semantic_segmentation"}},
               {"name": "d", "source": "depth", "source_args": {"images": str(photos), "depth": str(tmp_path / "depth")},
                "builder": "pairs", "builder_args": {"task": "depth"}}):
        cfg = BuildConfig.model_validate({"out": str(tmp_path / "out"), "datasets": [ds]})
        for i, payload in enumerate(make_source(cfg, cfg.datasets[0]).plan(16)):
            run_unit(cfg, ds["name"], f"{i:05d}", payload, str(tmp_path / "out"))
        audit = {r["item_id"]: r for r in pq.read_table(tmp_path / "out" / "audit" / ds["name"]).to_pylist()}
        assert audit["broken"]["reason"] == "unpaired"
        assert audit["sub/123_456"]["status"] == audit["sub/456_123"]["status"] == "ok"
        rows = pq.read_table(tmp_path / "out" / "sentences" / ds["name"] / "part-00000.parquet").to_pylist()
        assert rows[0]["num_images"] == 4
