"""A real exported program (torch.export → .pt2), made here as docs/annotations.md shows, pseudo-labels
photos through the `pseudo_label` task into sentences; `uvd plan` leaves an entry whose model is
missing NOT PLANNED."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import SAMPLES, build_dataset
from renderers.depth import colour_depth, colour_normals
from uvd import codec
from uvd.api import BuildContext


class TinyDense(nn.Module):
    """A DPT/Omnidata-shaped toy: a strided encoder, a decoder upsampled to the input's size."""

    def __init__(self, out_channels: int, head: str) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.dec = nn.Conv2d(8, out_channels, 1)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(self.dec(self.enc(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.head == "depth":
            return F.softplus(y) + 0.1  # positive relative depth/disparity
        if self.head == "edges":
            return torch.sigmoid(20 * (y - y.mean()))  # sharp, so the toy has visible edges
        return y  # normals: the labeller normalises them


def export(model: nn.Module, path: Path) -> Path:
    """The recipe of docs/annotations.md: dynamic batch, height and width; saved as .pt2."""
    model.eval()
    auto = torch.export.Dim.AUTO
    program = torch.export.export(model, (torch.zeros(1, 3, 64, 96),), dynamic_shapes=({0: auto, 2: auto, 3: auto},))
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[nn.Module, Path]]:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    out = {}
    for kind, c in (("depth", 1), ("normals", 3), ("edges", 1)):
        m = TinyDense(c, kind)
        out[kind] = (m, export(m, root / f"{kind}.pt2"))
    return out


def _photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for f in sorted((SAMPLES / "images").glob("*.jpg"))[:4]:
        (root / f.name).write_bytes(f.read_bytes())
    return root


def test_exported_depth_normals_and_edges_models_label_photos_into_sentences(tmp_path, models):
    photos = _photos(tmp_path)
    ctx = BuildContext(dataset="x")
    for kind, (eager, path) in models.items():
        rows, audit, _ = build_dataset(tmp_path / kind, {
            "name": f"pl_{kind}", "source": "image_folder", "source_args": {"root": str(photos), "labels": False},
            "builder": "pairs", "builder_args": {"task": "pseudo_label", "pairs": 2, "epochs": 1,
                                                 "task_args": {"model": str(path), "kind": kind,
                                                               "render": "uvd"}}})
        assert len(audit) == 4 and all(a["status"] == "ok" for a in audit.values()), kind
        assert len(rows) == 2 and all(r["num_images"] == 4 and r["task"] == "pseudo_label" for r in rows)
        for r in rows:
            for item_id, k in zip(json.loads(r["meta"])["item_ids"], (0, 2)):
                photo = ctx.photo((photos / item_id).read_bytes())
                assert np.abs(codec.decode(r["images"][k]).astype(int) - photo).mean() < 3  # the photo (JPEG)
                # the label is what the eager network predicts for that photo, rendered like ground truth
                with torch.inference_mode():
                    y = eager(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255)[0]
                if kind == "depth":
                    want = colour_depth(y[0].numpy())
                elif kind == "normals":
                    want = colour_normals(F.normalize(y, dim=0).permute(1, 2, 0).numpy())
                else:
                    grey = np.round(y[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
                    want = np.repeat(grey[..., None], 3, axis=2)
                got = codec.decode(r["images"][k + 1])
                assert r["images"][k + 1][:4] == b"\x89PNG"
                assert np.abs(got.astype(int) - want).mean() < 1.0, kind
                assert got.std() > 1, kind  # not a flat image


def test_plan_leaves_a_pseudo_label_entry_without_its_model_not_planned(tmp_path, models, capsys):
    from uvd.cli.plan_cmd import main

    photos = _photos(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
out: {tmp_path / 'out'}
datasets:
  - name: with_model
    source: image_folder
    source_args: {{root: {photos}, labels: false}}
    builder: pairs
    builder_args: {{task: pseudo_label, task_args: {{model: "{models['depth'][1]}", kind: depth}}}}
  - name: without_model
    source: image_folder
    source_args: {{root: {photos}, labels: false}}
    builder: pairs
    builder_args: {{task: pseudo_label, task_args: {{model: "${{UVD_TEST_NO_SUCH_MODEL:-{tmp_path}/none.pt2}}", kind: normals}}}}
""")
    assert main([str(cfg)]) == 0
    out = capsys.readouterr().out
    lines: dict[str, str] = {}  # an entry may print several lines (e.g. a note on its resize mode)
    for ln in out.splitlines():
        if ln.strip():
            lines[ln.split()[0]] = lines.get(ln.split()[0], "") + ln + "\n"
    assert "NOT PLANNED" in lines["without_model"] and "pseudo_label.model: path does not exist" in lines["without_model"]
    assert "NOT PLANNED" not in lines["with_model"] and "4 items" in lines["with_model"]
