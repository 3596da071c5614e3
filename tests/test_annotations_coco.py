"""COCO source, box/pose/mask renderers and the annotation tasks, on the real bundled COCO sample."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from renderers import pose as pose_mod
from renderers.masks import decode_segmentation, render_instances, render_semantic
from renderers.palette import PALETTE, class_color, colorize, instance_color
from sentence_builders import annotation_tasks as tasks
from sources.coco import CocoOptions, CocoSource
from uvd.api import BuildContext
from uvd.config import parse_model, BuildConfig
from uvd.errors import ConfigError
from uvd.image import fit_transform
from uvd.layout import audit_shard, sentence_shard
from uvd.shards import read_table
from uvd.unit import run_unit

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data" / "coco"
JSON = SAMPLES / "test_coco.json"
CTX = BuildContext(dataset="coco")


def coco_items(annotations: Path = JSON, images_dir: Path = SAMPLES, ctx: BuildContext = CTX) -> list:
    src = CocoSource(CocoOptions(annotations=[str(annotations)], images_dir=str(images_dir)), ctx)
    return [r for unit in src.plan(256) for r in src.read(unit)]


def item_by_id(items: list, iid: str):
    return next(i for i in items if i.item_id == iid)


# --- source ----------------------------------------------------------------------------------

def test_source_reads_the_sample_in_original_coordinates():
    items = coco_items()
    assert [i.item_id for i in items] == ["785", "40083", "196141", "197388"]
    objs = [o for i in items for o in i.annotations["objects"]]
    assert len(objs) == 14 and all(o["category"] == "person" for o in objs)
    skier = item_by_id(items, "785")
    assert (skier.annotations["width"], skier.annotations["height"]) == (640, 425)
    (o,) = skier.annotations["objects"]
    assert o["bbox"] == pytest.approx([280.79, 44.73, 218.7, 346.68])
    assert o["keypoints"].shape == (17, 3) and tuple(o["keypoints"][0]) == (367, 81, 2)
    assert skier.images[0][:3] == b"\xff\xd8\xff"


# --- palette ---------------------------------------------------------------------------------

def test_palette_is_fixed_distinct_and_background_black():
    assert PALETTE.shape == (256, 3) and tuple(PALETTE[0]) == (0, 0, 0)
    assert len({tuple(c) for c in PALETTE[1:]}) == 255
    # Pinned: changing the palette changes every rendered dataset, so it must be deliberate.
    assert PALETTE[1:6].tolist() == [[255, 0, 0], [89, 138, 255], [112, 191, 0], [191, 67, 176], [0, 255, 212]]
    assert class_color(1) == (255, 0, 0) and class_color(256) == class_color(1)
    assert instance_color(0) == class_color(1)
    assert colorize(np.array([[0, 2]])).tolist() == [[[0, 0, 0], [89, 138, 255]]]


# --- boxes -----------------------------------------------------------------------------------

def _dist_to_rect_edges(px: np.ndarray, py: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Distance of points to the outline of an axis-aligned rectangle."""
    def seg(ax, ay, bx, by):
        cx, cy = np.clip(px, min(ax, bx), max(ax, bx)), np.clip(py, min(ay, by), max(ay, by))
        return np.hypot(px - cx, py - cy)
    return np.minimum.reduce([seg(x0, y0, x1, y0), seg(x1, y0, x1, y1), seg(x1, y1, x0, y1), seg(x0, y1, x0, y0)])


@pytest.mark.parametrize("resize", ["center_crop", "pad", "squash"])
def test_box_pixels_lie_on_the_annotated_box_edges(resize):
    from uvd.config import ImageSpec
    ctx = BuildContext(dataset="coco", image=ImageSpec(resize=resize))
    checked_edges = 0
    for item in coco_items(ctx=ctx):
        (photo, f0), (boxed, f1) = tasks.detection(item, ctx, ctx.rng(item.item_id))
        assert (f0, f1) == (False, True) and photo.shape == boxed.shape == (256, 256, 3)
        w, h = item.annotations["width"], item.annotations["height"]
        t = fit_transform(w, h, 256, resize)
        rects = []
        for o in item.annotations["objects"]:
            x, y, bw, bh = o["bbox"]
            (x0, y0), (x1, y1) = t.points(np.array([[x, y], [x + bw, y + bh]]))
            rects.append((x0, y0, x1, y1))
        changed = np.any(boxed != photo, axis=2)
        ys, xs = np.nonzero(changed)
        assert len(xs) > 100
        d = np.min([_dist_to_rect_edges(xs, ys, *r) for r in rects], axis=0)
        assert d.max() <= 2.0, "a pixel changed away from every annotated box edge"
        assert np.all(boxed[changed] == class_color(1))  # person, category 1
        # Each edge that lies inside the canvas is drawn along its whole length.
        red = np.all(boxed == class_color(1), axis=2)
        for x0, y0, x1, y1 in rects:
            for (ax, ay, bx, by) in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x0, y1, x1, y1), (x0, y0, x0, y1)):
                if not (1 <= min(ax, bx) and max(ax, bx) <= 254 and 1 <= min(ay, by) and max(ay, by) <= 254):
                    continue
                pts = np.linspace((ax, ay), (bx, by), 25)
                hits = [red[int(round(py)) - 1:int(round(py)) + 2, int(round(px)) - 1:int(round(px)) + 2].any() for px, py in pts]
                assert all(hits)
                checked_edges += 1
    assert checked_edges >= 10


# --- pose ------------------------------------------------------------------------------------

def _seg_dist(px, py, a, b):
    ab = b - a
    L = float(ab @ ab)
    tt = np.clip(((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / L, 0, 1) if L else np.zeros_like(px, dtype=float)
    return np.hypot(px - (a[0] + tt * ab[0]), py - (a[1] + tt * ab[1]))


def _expected_geometry(kp17: np.ndarray):
    """Independent of the renderer: OpenPose points (neck = mean of shoulders) and visible links."""
    names = pose_mod.COCO_KEYPOINT_NAMES
    pts = {n: (kp17[i, :2], kp17[i, 2] > 0) for i, n in enumerate(names)}
    ls, rs = pts["left_shoulder"], pts["right_shoulder"]
    pts["neck"] = ((ls[0] + rs[0]) / 2, ls[1] and rs[1])
    links = [(pts[a][0], pts[b][0]) for a, b in pose_mod.SKELETON if pts[a][1] and pts[b][1]]
    visible = [p for p, v in pts.values() if v]
    return links, visible


def test_skeleton_pixels_lie_on_links_between_visible_keypoints():
    size = 256
    lw, r = pose_mod.pose_line_width(size, size), pose_mod.pose_radius(size, size)
    links_checked = 0
    for item in coco_items():
        (_, _), (sk, lossless) = tasks.pose(item, CTX, CTX.rng(item.item_id))
        assert lossless
        t = fit_transform(item.annotations["width"], item.annotations["height"], size, "center_crop")
        lit = np.any(sk > 0, axis=2)
        ys, xs = np.nonzero(lit)
        dist = np.full(len(xs), np.inf)
        for o in item.annotations["objects"]:
            kp = o["keypoints"].copy()
            kp[:, :2] = t.points(kp[:, :2])
            links, visible = _expected_geometry(kp)
            for a, b in links:
                dist = np.minimum(dist, _seg_dist(xs, ys, np.asarray(a), np.asarray(b)) - (lw + 1))
                mid = (np.asarray(a) + np.asarray(b)) / 2
                if 0 <= mid[0] < size and 0 <= mid[1] < size:
                    assert lit[int(round(mid[1])), int(round(mid[0]))], "a link between visible keypoints is missing"
                    links_checked += 1
            for p in visible:
                dist = np.minimum(dist, np.hypot(xs - p[0], ys - p[1]) - (r + 1))
        assert dist.max() <= 0.5, "a lit pixel is on no link and near no visible keypoint"
    assert links_checked >= 40


def test_invisible_keypoint_and_its_links_are_not_drawn(tmp_path):
    data = json.loads(JSON.read_text())
    skier = next(a for a in data["annotations"] if a["id"] == 442619)
    lw_idx = pose_mod.COCO_KEYPOINT_NAMES.index("left_wrist")
    x, y = skier["keypoints"][3 * lw_idx:3 * lw_idx + 2]
    before = tasks.pose(item_by_id(coco_items(), "785"), CTX, CTX.rng("785"))[1][0]
    skier["keypoints"][3 * lw_idx + 2] = 0  # coordinates kept: only the visibility says "not labelled"
    (tmp_path / "c.json").write_text(json.dumps(data))
    after = tasks.pose(item_by_id(coco_items(tmp_path / "c.json"), "785"), CTX, CTX.rng("785"))[1][0]
    (px, py), = fit_transform(640, 425, 256, "center_crop").points(np.array([[x, y]]))
    win = (slice(int(py) - 3, int(py) + 4), slice(int(px) - 3, int(px) + 4))
    assert before[win].any() and not after[win].any()
    # The elbow–wrist link is gone too: its middle is black now.
    le = skier["keypoints"][3 * 7:3 * 7 + 2]
    (mx, my), = fit_transform(640, 425, 256, "center_crop").points(np.array([[(le[0] + x) / 2, (le[1] + y) / 2]]))
    assert before[int(round(my)), int(round(mx))].any() and not after[int(round(my)), int(round(mx))].any()


def _person(**visible_overrides: int) -> np.ndarray:
    kp = np.zeros((17, 3))
    layout = {"nose": (50, 20), "left_shoulder": (65, 40), "right_shoulder": (35, 40), "left_hip": (60, 80),
              "right_hip": (40, 80)}
    for name, (x, y) in layout.items():
        i = pose_mod.COCO_KEYPOINT_NAMES.index(name)
        kp[i] = (x, y, visible_overrides.get(name, 2))
    return kp[None]


def test_neck_is_mean_of_shoulders_only_when_both_are_visible():
    neck = pose_mod.KEYPOINT_NAMES.index("neck")
    both = pose_mod.render_pose(_person(), 100, 100, line_width=1, radius=2)
    assert tuple(both[40, 50]) == pose_mod.KEYPOINT_COLORS[neck]
    op = pose_mod.coco_to_openpose(_person(right_shoulder=0))
    assert op[0, neck, 2] == 0
    one = pose_mod.render_pose(_person(right_shoulder=0), 100, 100, line_width=1, radius=2)
    assert not one[36:45, 46:55].any() and not one[30, 50].any()  # no neck, no neck–nose link
    assert one[40, 65].any()  # the visible shoulder is still drawn
    # Occluded-but-labelled (v=1) counts as visible, as in MMPose's COCO loader.
    assert tuple(pose_mod.render_pose(_person(left_shoulder=1), 100, 100, 1, 2)[40, 50]) == pose_mod.KEYPOINT_COLORS[neck]


def test_openpose_table_matches_mmpose_when_installed():
    """Our copy of MMPose's coco_openpose dataset_info must equal the original file."""
    from support.mmpose_files import mmpose_configs, read_config

    ns = read_config(mmpose_configs() / "_base_" / "datasets" / "coco_openpose.py")
    info = ns["dataset_info"]
    kpts = [info["keypoint_info"][i] for i in range(len(info["keypoint_info"]))]
    assert tuple(k["name"] for k in kpts) == pose_mod.KEYPOINT_NAMES
    assert tuple(tuple(k["color"]) for k in kpts) == pose_mod.KEYPOINT_COLORS
    links = [info["skeleton_info"][i] for i in range(len(info["skeleton_info"]))]
    assert tuple(tuple(s["link"]) for s in links) == pose_mod.SKELETON
    assert tuple(tuple(s["color"]) for s in links) == pose_mod.LINK_COLORS


def test_openpose_table_shape_and_coco_mapping():
    assert len(pose_mod.KEYPOINT_NAMES) == len(pose_mod.KEYPOINT_COLORS) == 18
    assert len(pose_mod.SKELETON) == len(pose_mod.LINK_COLORS) == 17
    # MMPose's own index permutation (local_visualizer._draw_instances_kpts_openpose), restated.
    mm = [17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3]
    op = [1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17]
    for o, m in zip(op, mm):
        assert pose_mod.COCO_TO_OPENPOSE[o] == (-1 if m == 17 else m)


# --- masks -----------------------------------------------------------------------------------

def test_polygon_uncompressed_and_compressed_rle_decode_to_the_same_mask():
    h, w = 60, 80
    poly = [[10.0, 10.0, 50.0, 12.0, 45.0, 40.0, 12.0, 35.0]]
    m_poly = decode_segmentation(poly, h, w)
    assert 900 < m_poly.sum() < 1300
    compressed = mask_utils.encode(np.asfortranarray(m_poly.astype(np.uint8)))
    flat = m_poly.flatten(order="F").astype(np.int8)
    runs, cur, n = [], 0, 0
    for v in flat:  # the uncompressed RLE of COCO's crowd annotations: run lengths, column-major, from 0s
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    m_unc = decode_segmentation({"size": [h, w], "counts": runs}, h, w)
    m_cmp = decode_segmentation({"size": [h, w], "counts": compressed["counts"].decode()}, h, w)
    assert np.array_equal(m_poly, m_unc) and np.array_equal(m_poly, m_cmp)


@pytest.mark.parametrize("seg, reason", [
    ([[1.0, 2.0, 3.0]], "need an even number"),
    ({"size": [10, 10], "counts": [5, 5]}, "do not sum"),
    ({"size": [9, 9], "counts": "abc"}, "differs from the image"),
    ("nonsense", "unknown segmentation encoding"),
])
def test_malformed_masks_are_bad_input(seg, reason):
    from uvd.errors import BadInput
    with pytest.raises(BadInput, match=reason) as e:
        decode_segmentation(seg, 10, 10)
    assert e.value.kind == "bad_mask"


def test_segmentation_maps_colour_masks_by_class_and_instance():
    a = np.zeros((20, 20), bool)
    a[2:18, 2:18] = True
    b = np.zeros((20, 20), bool)
    b[5:8, 5:8] = True  # small object on a large one: painted last, stays visible
    sem = render_semantic([b, a], [3, 1], 20, 20)
    assert tuple(sem[6, 6]) == class_color(3) and tuple(sem[12, 12]) == class_color(1) and not sem[0, 0].any()
    inst = render_instances([a, b], 20, 20)
    assert tuple(inst[12, 12]) == instance_color(0) and tuple(inst[6, 6]) == instance_color(1)


def test_segmentation_task_lines_up_with_the_photo():
    item = item_by_id(coco_items(), "785")
    (_, _), (seg, lossless) = tasks.segmentation(item, CTX, CTX.rng("785"))
    assert lossless and set(map(tuple, seg.reshape(-1, 3))) == {(0, 0, 0), class_color(1)}
    t = fit_transform(640, 425, 256, "center_crop")
    kp = item.annotations["objects"][0]["keypoints"]
    (hx, hy), = t.points(kp[11:12, :2])  # the left hip lies on the skier's body
    assert tuple(seg[int(hy), int(hx)]) == class_color(1)
    assert not seg[5, 5].any()  # the sky


def test_rle_masks_render_like_the_polygons_they_encode(tmp_path):
    data = json.loads(JSON.read_text())
    for a in data["annotations"]:
        img = next(i for i in data["images"] if i["id"] == a["image_id"])
        m = decode_segmentation(a["segmentation"], img["height"], img["width"])
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        a["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        a["iscrowd"] = 1
    (tmp_path / "rle.json").write_text(json.dumps(data))
    rle_items, poly_items = coco_items(tmp_path / "rle.json"), coco_items()
    for task in (tasks.segmentation, tasks.instance_segmentation):
        for r_it, p_it in zip(rle_items, poly_items):
            a = task(r_it, CTX, CTX.rng(r_it.item_id))[1][0]
            b = task(p_it, CTX, CTX.rng(p_it.item_id))[1][0]
            agree = np.all(a == b, axis=2).mean()
            assert agree > 0.98 and np.any(a != 0)


# --- whole units: audit, bad inputs, determinism ---------------------------------------------

def _cfg(tmp_path: Path, annotations: Path, images_dir: Path, builder: str = "pairs", args: dict | None = None, seed: int = 0):
    return parse_model(BuildConfig, {"out": str(tmp_path / "out"), "seed": seed, "datasets": [{
        "name": "coco", "source": "coco",
        "source_args": {"annotations": str(annotations), "images_dir": str(images_dir)},
        "builder": builder, "builder_args": args or {"task": "detection", "pairs": 8}}]}, "test")


def _run(cfg, out: Path) -> tuple[dict, dict[str, str]]:
    from uvd.unit import make_source
    ds = cfg.datasets[0]
    payloads = make_source(cfg, ds).plan(ds.items_per_unit)
    assert len(payloads) == 1
    stats = run_unit(cfg, "coco", "00000", payloads[0], str(out))
    audit = read_table(audit_shard(str(out), "coco", "00000")).to_pylist()
    return stats, {r["item_id"]: (r["error"] or r["status"]) for r in audit}


def _bad_coco(tmp_path: Path) -> Path:
    data = json.loads(JSON.read_text())
    anns = {a["image_id"]: a for a in data["annotations"]}
    with_nose = next(a for a in data["annotations"] if a["image_id"] == 40083 and a["keypoints"][2] > 0)
    with_nose["keypoints"][0] = 900  # nose far right of a 500-wide image
    anns[196141]["bbox"][2] = 0  # zero width
    anns[197388]["bbox"][3] = -5  # negative height
    img = copy.deepcopy(data["images"][0])
    img.update(id=1, file_name="missing.jpg")
    data["images"].append(img)
    img2 = copy.deepcopy(data["images"][0])
    img2.update(id=2)  # the skier's photo again, with a malformed RLE mask
    data["images"].append(img2)
    data["annotations"].append({"id": 7, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5],
                                "segmentation": {"size": [425, 640], "counts": [1, 2, 3]}})
    data["annotations"].append({"id": 8, "image_id": 999, "category_id": 1, "bbox": [1, 1, 5, 5]})
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    return p


def test_bad_annotations_and_missing_files_end_in_the_audit(tmp_path):
    cfg = _cfg(tmp_path, _bad_coco(tmp_path), SAMPLES, args={"task": "segmentation", "min_pairs": 1})
    stats, audit = _run(cfg, tmp_path / "out")
    assert stats["inputs"] == stats["ok"] + stats["failed"] == 7
    assert audit["785"] == "ok"
    assert audit["40083"].startswith("bad_annotation:") and "keypoint 0 at (900" in audit["40083"]
    assert "zero or negative size" in audit["196141"] and "zero or negative size" in audit["197388"]
    assert audit["1"].startswith("io:") and "missing.jpg" in audit["1"]
    assert audit["2"].startswith("bad_mask:")
    assert audit["annotation:8"].startswith("bad_json:") and "999" in audit["annotation:8"]
    table = read_table(sentence_shard(str(tmp_path / "out"), "coco", "00000")).to_pylist()
    assert [r["num_images"] for r in table] == [2] and json.loads(table[0]["meta"])["item_ids"] == ["785"]


@pytest.mark.parametrize("content", [JSON.read_text()[:5000], "{\"images\": 3}", "[1, 2]"])
def test_truncated_or_malformed_json_is_a_config_error_naming_the_file(tmp_path, content):
    p = tmp_path / "broken.json"
    p.write_text(content)
    src = CocoSource(CocoOptions(annotations=[str(p)], images_dir=str(SAMPLES)), CTX)
    with pytest.raises(ConfigError, match="broken.json"):
        src.plan(16)


def test_missing_paths_are_refused_by_the_options():
    with pytest.raises(Exception, match="does not exist"):
        parse_model(CocoOptions, {"annotations": "/nonexistent/x.json", "images_dir": str(SAMPLES)}, "coco")


def test_same_seed_gives_byte_identical_shards(tmp_path):
    args = {"tasks": ["detection", "pose", "segmentation", "instance_segmentation"]}
    digests, chosen = [], []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = _cfg(tmp_path / run, JSON, SAMPLES, builder="tuple", args=args, seed=seed)
        _run(cfg, tmp_path / run)
        shard = sentence_shard(str(tmp_path / run), "coco", "00000")
        digests.append(hashlib.sha256(Path(shard).read_bytes()).hexdigest())
        chosen.append([json.loads(m)["chosen"] for m in read_table(shard, ["meta"]).column("meta").to_pylist()])
    assert digests[0] == digests[1]
    assert chosen[0] == chosen[1] and chosen[0] != chosen[2]  # the subsets come from the seed
