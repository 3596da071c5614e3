"""Generated low-level pairs (colorization, inpainting, noise, low light, rain, blur, edges) and
real pairs from the `paired` source, on synthetic inputs with known answers and through run_unit."""
from __future__ import annotations

import json

from pathlib import Path

import cv2
import numpy as np
import pytest

from renderers import degrade
from renderers.edges import canny
from sentence_builders import generated_tasks as gt
from uvd import codec
from uvd.api import BuildContext
from uvd.config import BuildConfig
from uvd.errors import BadInput
from uvd.records import Item
from conftest import build_dataset

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
RNG = np.random.default_rng


def photo() -> np.ndarray:
    return cv2.imread(str(SAMPLES / "coco" / "000000040083.jpg"))[:, :, ::-1].copy()


def run_all(tmp_path: Path, dataset: dict, seed: int = 5) -> tuple[list[dict], dict[str, dict], Path]:
    return build_dataset(tmp_path, dataset, seed)


def test_colorization_is_exactly_lvms_formula():
    img = RNG(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    g = degrade.grayscale(img)
    expect = np.rint(0.2989 * img[..., 0].astype(float) + 0.5870 * img[..., 1] + 0.1140 * img[..., 2])
    assert (g[..., 0] == expect).all() and (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert tuple(degrade.grayscale(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8))[0, :, 0]) == (76, 150, 29)


def test_inpainting_masks_follow_the_lvm_recipe_and_are_deterministic():
    holes, tile_fracs = 0, []
    for seed in range(400):
        m = degrade.inpainting_mask(256, 256, RNG(seed))
        assert (m == degrade.inpainting_mask(256, 256, RNG(seed))).all()
        ys, xs = np.nonzero(m)
        tiles = m.reshape(8, 32, 8, 32).transpose(0, 2, 1, 3).reshape(64, -1)
        whole_tiles = bool((tiles.all(axis=1) | ~tiles.any(axis=1)).all())
        side = ys.max() - ys.min() + 1 if ys.size else 0
        square = bool(ys.size) and xs.max() - xs.min() + 1 == side and m.sum() == side * side
        if square and not whole_tiles:
            assert 25 <= side < 128  # one square, side in [10%, 50%) of the short side 256
            holes += 1
        elif whole_tiles and not square:
            tile_fracs.append(m.mean())
        else:
            assert square and whole_tiles  # a square that happens to sit on the 32-px grid
    assert 0.22 < holes / 400 < 0.38  # hole_prob 0.3
    # the drop probability is drawn per image: tile fractions spread over (0, 1)
    assert min(tile_fracs) < 0.1 and max(tile_fracs) > 0.9 and 0.35 < np.mean(tile_fracs) < 0.65


def test_inpainting_blacks_out_exactly_the_mask():
    img = photo()
    out = degrade.inpainting(img, RNG(9))
    m = degrade.inpainting_mask(*img.shape[:2], RNG(9))
    assert (out[m] == 0).all() and (out[~m] == img[~m]).all()


def test_canny_finds_a_step_edge_where_it_is():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 40:] = 200
    e = canny(img, 50, 150, blur_sigma=0)
    cols = np.nonzero(e[..., 0].any(axis=0))[0]
    assert set(cols) <= {39, 40} and e[5:-5, cols[0]].all()
    assert set(np.unique(e)) == {0, 255}
    assert not canny(img, 5000, 6000, blur_sigma=0).any()  # thresholds are honoured


def test_degradations_are_deterministic_and_do_what_they_say():
    img = photo()[:256, :256]
    for fn in (degrade.noise, degrade.low_light, degrade.rain, degrade.blur):
        a, b = fn(img, RNG(3)), fn(img, RNG(3))
        assert a.dtype == np.uint8 and a.shape == img.shape and (a == b).all()
        assert not (a == fn(img, RNG(4))).all()
    n = degrade.noise(img, RNG(1), sigma=(20, 20)).astype(float) - img
    assert 14 < n.std() < 21  # clipping at 0/255 trims a little
    assert degrade.low_light(img, RNG(1)).mean() < 0.5 * img.mean()
    r = degrade.rain(img, RNG(2)).astype(int)
    assert (r >= img).all() and (r > img + 20).mean() > 0.005  # streaks only brighten
    lap = lambda x: cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    for seed in range(4):  # both blur kinds
        assert lap(degrade.blur(img, RNG(seed))) < 0.6 * lap(img)


def test_generated_tasks_return_a_photo_pair_of_sentence_size():
    ctx = BuildContext(dataset="p")
    item = Item("a.jpg", "p", images=[(SAMPLES / "images" / "456_123.jpg").read_bytes()])
    clean = ctx.photo(item.images[0])
    for name in ("colorization", "inpainting", "denoise", "lowlight", "derain", "deblur", "edges"):
        (x, xl), (y, yl) = getattr(gt, name)(item, ctx, RNG(0))
        assert x.shape == y.shape == (256, 256, 3) and x.dtype == np.uint8
        if name == "edges":
            assert (x == clean).all() and yl and set(np.unique(y)) <= {0, 255}
        else:
            assert (y == clean).all() and not xl and not (x == clean).all()
    with pytest.raises(BadInput, match="unpaired"):
        gt.paired(item, ctx, RNG(0))


def test_colorization_pairs_from_an_image_folder_build_deterministically(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for f in sorted((SAMPLES / "images").glob("*.jpg")):
        (root / f.name).write_bytes(f.read_bytes())
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    for task in ("colorization", "inpainting"):
        ds = {"name": task, "source": "image_folder", "source_args": {"root": str(root), "labels": False},
              "builder": "pairs", "builder_args": {"task": task, "pairs": 3, "min_pairs": 1}}
        rows, audit, _ = run_all(tmp_path / f"{task}1", ds)
        rows2, _, _ = run_all(tmp_path / f"{task}2", ds)
        assert [r["images"] for r in rows] == [r["images"] for r in rows2]
        assert audit["broken.jpg"]["reason"] == "decode"
        assert sum(a["status"] == "ok" for a in audit.values()) == 7
        meta = [json.loads(r["meta"]) for r in rows]
        # epoch 0 groups consecutive items; colorization has 2 epochs, inpainting 5 (LVM's defaults)
        first = [r["num_images"] for r, m in zip(rows, meta) if m["epoch"] == 0]
        assert first == [6, 6, 2] and {r["task"] for r in rows} == {task}
        assert {m["epoch"] for m in meta} == set(range({"colorization": 2, "inpainting": 5}[task]))
        assert len({r["sentence_id"] for r in rows}) == len(rows)
        if task == "colorization":
            x = codec.decode(rows[0]["images"][0])
            assert np.abs(x[..., 0].astype(int) - x[..., 2]).max() <= 3  # grey (after JPEG)
    other, _, _ = run_all(tmp_path / "seed", ds, seed=6)  # a different seed draws other masks
    assert [r["images"] for r in other] != [r["images"] for r in rows]


def test_paired_folders_match_by_name_and_a_missing_partner_ends_in_the_audit(tmp_path):
    inp, tgt = tmp_path / "rain", tmp_path / "clean"
    (inp / "sub").mkdir(parents=True)
    (tgt / "sub").mkdir(parents=True)
    clean = photo()
    rainy = degrade.rain(clean, RNG(0))
    for name in ("001", "002", "sub/003"):
        (inp / f"{name}.png").write_bytes(codec.encode(rainy, lossless=True))
        (tgt / f"{name}.jpg").write_bytes(codec.encode(clean))
    (inp / "only_input.png").write_bytes(codec.encode(rainy, lossless=True))
    (tgt / "only_target.jpg").write_bytes(codec.encode(clean))
    (inp / "004.png").write_bytes(codec.encode(rainy[:100], lossless=True))
    (tgt / "004.jpg").write_bytes(codec.encode(clean))
    rows, audit, _ = run_all(tmp_path, {
        "name": "rain100", "source": "paired", "source_args": {"inputs": str(inp), "targets": str(tgt), "task": "derain"},
        "builder": "pairs", "builder_args": {"task": "derain", "pairs": 8}})
    assert audit["only_input"]["reason"] == "unpaired" and "no target" in audit["only_input"]["error"]
    assert audit["only_target"]["reason"] == "unpaired" and "no input" in audit["only_target"]["error"]
    assert audit["004"]["reason"] == "size_mismatch"
    assert {k for k, a in audit.items() if a["status"] == "ok"} == {"001", "002", "sub/003"}
    assert len(rows) == 1 and rows[0]["num_images"] == 6 and rows[0]["task"] == "derain"
    ctx = BuildContext(dataset="rain100")
    x, y = codec.decode(rows[0]["images"][0]), codec.decode(rows[0]["images"][1])
    # the real pair is used, not a new synthetic rain: x is the stored rainy file, y the clean one
    assert np.abs(x.astype(int) - ctx.photo(rainy)).mean() < 2.5
    assert np.abs(y.astype(int) - ctx.photo(clean)).mean() < 2.5


@pytest.mark.slow
def test_generated_and_paired_tasks_through_ray_match_the_in_process_build(tmp_path):
    from uvd.runner import build

    root = tmp_path / "photos"
    root.mkdir()
    for f in sorted((SAMPLES / "images").glob("*.jpg")):
        (root / f.name).write_bytes(f.read_bytes())
    datasets = [{"name": t, "source": "image_folder", "source_args": {"root": str(root), "labels": False},
                 "builder": "pairs", "builder_args": {"task": t, "pairs": 2, "min_pairs": 1}, "items_per_unit": 4}
                for t in ("inpainting", "derain", "edges")]
    cfg = BuildConfig.model_validate({"out": str(tmp_path / "ray"), "seed": 2, "datasets": datasets})
    summary = build(cfg, workers=2)
    assert summary.succeeded
    build(cfg, out=str(tmp_path / "local"), use_ray=False)
    for t in ("inpainting", "derain", "edges"):
        for part in ("part-00000.parquet", "part-00001.parquet"):
            a = (tmp_path / "ray" / "sentences" / t / part).read_bytes()
            assert a == (tmp_path / "local" / "sentences" / t / part).read_bytes()


def test_stereo_and_style_use_the_items_own_pair():
    from sentence_builders.tasks import get_task

    ctx = BuildContext(dataset="s")
    left = photo()
    right = np.roll(left, 7, axis=1)  # a horizontal disparity
    item = Item("pair", "s", images=[codec.encode(left, lossless=True), codec.encode(right, lossless=True)])
    for task in ("stereo", "style", "paired"):
        (x, xl), (y, yl) = get_task(task)(item, ctx, RNG(0))
        assert (x == ctx.photo(left)).all() and (y == ctx.photo(right)).all() and not xl and not yl
