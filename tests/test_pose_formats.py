"""Every 2D pose format of sample_data/pose/ builds OpenPose skeletons with the expected points.

The expected points come from the annotation files and the keypoint NAMES (a point named like an
OpenPose body point must be drawn at its place), not from our index tables, so a wrong table
fails here. The tables themselves are compared with MMPose 1.3.2's files when mmpose is installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, build_dataset
from support.mmpose_files import mmpose_configs, read_config
from renderers import pose as pose_mod
from uvd import codec
from uvd.errors import BadInput
from uvd.image import fit_transform
from uvd.keypoint_formats import COCO17, NAMES, NUM_KEYPOINTS, TO_WHOLEBODY, detect_format, to_openpose

POSE = SAMPLES / "pose"
SIZE = 256
R = pose_mod.pose_radius(SIZE, SIZE)

# name, source, source_args, the file's format, whether it has whole-body parts
CASES = [
    ("aic", "coco", {"annotations": str(POSE / "aic/test_aic.json"), "images_dir": str(SAMPLES / "coco"),
                     "keypoint_format": "aic"}, "aic"),
    ("crowdpose", "coco", {"annotations": str(POSE / "crowdpose/test_crowdpose.json"),
                           "images_dir": str(SAMPLES / "coco")}, "crowdpose"),
    ("ochuman", "coco", {"annotations": str(POSE / "ochuman/test_ochuman.json"), "images_dir": str(SAMPLES / "coco")},
     "ochuman"),
    ("halpe26", "coco", {"annotations": str(POSE / "halpe26/test_halpe26.json"), "images_dir": str(SAMPLES / "coco")},
     "halpe26"),
    ("halpe136", "coco", {"annotations": str(POSE / "halpe/test_halpe.json"), "images_dir": str(SAMPLES / "coco")},
     "halpe136"),
    ("coco_wholebody", "coco", {"annotations": str(POSE / "coco_wholebody/test_coco_wholebody.json"),
                                "images_dir": str(SAMPLES / "coco")}, "coco_wholebody"),
    ("mpii_coco", "coco", {"annotations": str(POSE / "mpii/test_mpii_coco.json"), "images_dir": str(POSE / "mpii")},
     "mpii"),
    ("mpii", "mpii", {"annotations": str(POSE / "mpii/test_mpii.json"), "images_dir": str(POSE / "mpii")}, "mpii"),
    ("posetrack18", "coco", {"annotations": str(POSE / "posetrack18/annotations/test_posetrack18_val.json"),
                             "images_dir": str(POSE / "posetrack18"), "outside": "clip"}, "posetrack18"),
    ("coco", "coco", {"annotations": str(SAMPLES / "coco/test_coco.json"), "images_dir": str(SAMPLES / "coco")}, "coco"),
]


def people_by_image(name: str, args: dict, fmt: str) -> dict[str, tuple[tuple[int, int], list[np.ndarray]]]:
    """item id → ((width, height), people as (K, 3) arrays in the file's own order), read from the file."""
    data = json.loads(Path(args["annotations"]).read_text())
    out: dict[str, tuple[tuple[int, int], list[np.ndarray]]] = {}
    if name == "mpii":  # MMPose's list-of-people layout
        from PIL import Image

        for p in data:
            size = Image.open(Path(args["images_dir"]) / p["image"]).size
            kp = np.concatenate([np.asarray(p["joints"], float), np.asarray(p["joints_vis"], float)[:, None]], axis=1)
            out.setdefault(p["image"], (size, []))[1].append(kp)
        return out
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    for a in sorted(data["annotations"], key=lambda a: a["id"]):
        kps = list(a["keypoints"])
        if fmt == "coco_wholebody":
            kps += a["foot_kpts"] + a["face_kpts"] + a["lefthand_kpts"] + a["righthand_kpts"]
        out.setdefault(str(a["image_id"]), (sizes[a["image_id"]], []))[1].append(np.asarray(kps, float).reshape(-1, 3))
    return out


def body_names(fmt: str) -> list[str]:
    """The format's points, by name; whole-body formats by their first 17 (COCO's names)."""
    return list(NAMES[fmt] or COCO17)


def canvas_point(xy: np.ndarray, wh: tuple[int, int]) -> tuple[int, int] | None:
    p = fit_transform(wh[0], wh[1], SIZE, "center_crop").points(np.asarray(xy, float)[None])[0]
    x, y = int(round(p[0])), int(round(p[1]))
    return (x, y) if R <= x < SIZE - R and R <= y < SIZE - R else None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = {}
    for name, source, args, _ in CASES:
        ds = {"name": name, "source": source, "source_args": args, "builder": "pairs",
              "builder_args": {"task": "pose", "pairs": 1, "min_pairs": 1}}
        out[name] = build_dataset(tmp_path_factory.mktemp(name), ds)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_format_draws_its_labelled_body_points_and_nothing_it_lacks(built, case):
    name, _, args, fmt = case
    rows, audit, _ = built[name]
    truth = people_by_image(name, args, fmt)
    assert rows and all(a["status"] == "ok" for a in audit.values() if a["item_id"] in truth and any(
        (p[:, 2] > 0).any() for p in truth[a["item_id"]][1]))
    names = body_names(fmt)
    drawn_points = 0
    for r in rows:
        item = json.loads(r["meta"])["item_ids"][0]
        wh, people = truth[item]
        skeleton = codec.decode(r["images"][1])
        assert skeleton.shape == (SIZE, SIZE, 3)
        for kp in people:
            for op_name in pose_mod.KEYPOINT_NAMES:
                if op_name in names and kp[names.index(op_name), 2] > 0:
                    at = canvas_point(kp[names.index(op_name), :2], wh)
                    if at is not None:
                        assert skeleton[at[1], at[0]].any(), (name, item, op_name)
                        drawn_points += 1
            ls, rs = names.index("left_shoulder"), names.index("right_shoulder")
            if kp[ls, 2] > 0 and kp[rs, 2] > 0 and "neck" not in names:  # the neck from the shoulders
                at = canvas_point((kp[ls, :2] + kp[rs, :2]) / 2, wh)
                if at is not None:
                    assert skeleton[at[1], at[0]].any(), (name, item, "neck")
            # a limb: the middle of a labelled shoulder–elbow segment is painted
            for side in ("left", "right"):
                s, e = names.index(f"{side}_shoulder"), names.index(f"{side}_elbow")
                if kp[s, 2] > 0 and kp[e, 2] > 0:
                    mid = canvas_point((kp[s, :2] + kp[e, :2]) / 2, wh)
                    if mid is not None:
                        assert skeleton[mid[1], mid[0]].any(), (name, item, f"{side} upper arm")
        # Points the format lacks are never drawn: their disc colour appears nowhere.
        colours = {tuple(c) for c in skeleton.reshape(-1, 3)}
        for op_name, colour in zip(pose_mod.KEYPOINT_NAMES, pose_mod.KEYPOINT_COLORS):
            if op_name not in names and op_name != "neck":
                assert colour not in colours, (name, item, op_name)
    assert drawn_points >= 10, name


def test_whole_body_formats_draw_feet_face_and_hands_beyond_the_body(built):
    """COCO-WholeBody and Halpe-136 paint more than their 17 body points alone would."""
    for name, _, args, fmt in CASES:
        if fmt not in ("coco_wholebody", "halpe136"):
            continue
        rows, _, _ = built[name]
        truth = people_by_image(name, args, fmt)
        extra_checked = 0
        for r in rows:
            item = json.loads(r["meta"])["item_ids"][0]
            wh, people = truth[item]
            skeleton = codec.decode(r["images"][1])
            t = fit_transform(wh[0], wh[1], SIZE, "center_crop")
            body = np.array([p[:17] if fmt == "coco_wholebody" else p[:17] for p in people])
            body[..., :2] = t.points(body[..., :2])
            only_body = pose_mod.render_pose(body, SIZE, SIZE)
            assert (skeleton.any(axis=2).sum() >= only_body.any(axis=2).sum())
            wb = to_openpose(np.array(people), fmt)
            for person in wb:
                for k in list(range(18, 134)):
                    if person[k, 2] > 0:
                        at = canvas_point(person[k, :2], wh)
                        if at is not None and not only_body[at[1], at[0]].any():
                            assert skeleton[at[1], at[0]].any(), (name, item, k)
                            extra_checked += 1
            if any(p[23:91, 2].any() if fmt == "coco_wholebody" else p[26:94, 2].any() for p in people):
                assert (skeleton == 255).all(axis=2).any(), (name, item, "white face points")
        assert extra_checked > 50, name


def test_pose_video_on_the_real_posetrack18_sample(tmp_path):
    root = POSE / "posetrack18"
    for builder in ("interleaved", "grouped"):
        rows, audit, _ = build_dataset(tmp_path / builder, {
            "name": "pt", "source": "pose_video", "builder": builder, "builder_args": {"task": "video_pose"},
            "source_args": {"root": str(root), "annotations": str(root / "annotations/val"), "frames_per_sentence": 1}})
        assert sorted(audit) == ["003418", "009473", "012834"] and all(a["status"] == "ok" for a in audit.values())
        assert len(rows) == 3 and all(r["num_images"] == 2 and r["task"] == "video_pose" for r in rows)
        for r in rows:
            frame, skeleton = codec.decode(r["images"][0]), codec.decode(r["images"][1])
            assert skeleton.any() and (skeleton == 0).all(axis=2).mean() > 0.5 and frame.std() > 10


def test_posetrack18_annotations_past_the_frame_fail_unless_clipped(tmp_path):
    args = {"annotations": str(POSE / "posetrack18/annotations/test_posetrack18_val.json"),
            "images_dir": str(POSE / "posetrack18")}
    _, audit, _ = build_dataset(tmp_path, {"name": "pt", "source": "coco", "source_args": args, "builder": "pairs",
                                           "builder_args": {"task": "pose", "pairs": 1, "min_pairs": 1}})
    assert audit["10034180000"]["reason"] == "bad_annotation" and "outside the 1920x1080" in audit["10034180000"]["error"]


def test_malformed_keypoints_still_end_bad_annotation(tmp_path):
    data = json.loads((POSE / "aic/test_aic.json").read_text())
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-3]  # 13 points
    bad = tmp_path / "aic.json"
    bad.write_text(json.dumps(data))
    rows, audit, _ = build_dataset(tmp_path, {
        "name": "aic", "source": "coco", "source_args": {"annotations": str(bad), "images_dir": str(SAMPLES / "coco"),
                                                         "keypoint_format": "aic"},
        "builder": "pairs", "builder_args": {"task": "pose", "pairs": 1, "min_pairs": 1}})
    a = audit[str(data["annotations"][0]["image_id"])]
    assert a["status"] == "failed" and a["reason"] == "bad_annotation" and "14×(x, y, v)" in a["error"] and "got 39" in a["error"]
    # 14 points without a category naming them: AIC or CrowdPose? Refused with the way out.
    data = json.loads((POSE / "aic/test_aic.json").read_text())
    data["categories"][0]["keypoints"] = []
    (tmp_path / "anon.json").write_text(json.dumps(data))
    _, audit, _ = build_dataset(tmp_path / "anon", {
        "name": "anon", "source": "coco", "source_args": {"annotations": str(tmp_path / "anon.json"),
                                                          "images_dir": str(SAMPLES / "coco")},
        "builder": "pairs", "builder_args": {"task": "pose", "pairs": 1, "min_pairs": 1}})
    assert {a["reason"] for a in audit.values()} == {"bad_annotation"}
    assert all("set `keypoint_format`" in a["error"] for a in audit.values())


def test_names_that_match_no_table_are_refused_not_decided_by_count():
    from uvd.keypoint_formats import undetected_reason

    animal = ["nose", "left_eye", "right_eye", "neck", "tail_root"] + [f"paw_{i}" for i in range(12)]  # 17 points
    assert detect_format(animal, 17) is None  # before: "coco" by count, drawn as a person
    why = undetected_reason(animal, 17)
    assert "17 keypoints named [nose, left_eye, right_eye, neck, ...]" in why and "coco" in why and "posetrack18" in why
    assert "AI Challenger" not in undetected_reason(None, 5) and "no known format has 5 points" in undetected_reason(None, 5)
    assert "aic, crowdpose" in undetected_reason(None, 14)


def test_detect_format_from_names_or_count():
    assert detect_format(None, 17) == detect_format(list(COCO17), 17) == "coco"
    assert detect_format(list(NAMES["posetrack18"]), 17) == "posetrack18"
    assert detect_format(list(NAMES["aic"]), 14) == "aic" and detect_format(None, 14) is None
    crowd_own_spelling = list(NAMES["crowdpose"][:12]) + ["head", "neck"]
    assert detect_format(crowd_own_spelling, 14) == "crowdpose"
    assert (detect_format(None, 16), detect_format(None, 26), detect_format(None, 136)) == ("mpii", "halpe26", "halpe136")
    assert detect_format(list(COCO17), 17, wholebody_fields=True) == "coco_wholebody"


def test_coco_openpose_mapping_is_unchanged_for_coco17():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 256, (3, 17, 2)), rng.integers(0, 3, (3, 17, 1))], axis=2)
    a = to_openpose(kp, "coco")
    assert a.shape == (3, 134, 3) and not a[:, 18:, 2].any()
    for o, c in enumerate(pose_mod.COCO_TO_OPENPOSE):
        if c >= 0:
            assert np.array_equal(a[:, o, :2], kp[:, c, :2])
    with pytest.raises(ValueError, match="unknown keypoint format"):
        to_openpose(kp, "coco18")


def test_keypoint_tables_match_mmpose_1_3_2():
    configs = mmpose_configs()
    from uvd.keypoint_formats import FORMAT_FILES

    for fmt, file in FORMAT_FILES.items():
        info = read_config(configs / "_base_" / "datasets" / file)["dataset_info"]["keypoint_info"]
        names = tuple(info[i]["name"] for i in range(len(info)))
        assert len(names) == NUM_KEYPOINTS[fmt], fmt
        if NAMES[fmt] is not None:
            assert names == NAMES[fmt], fmt
    mappings = read_config(configs / "wholebody_2d_keypoint/rtmpose/cocktail14/rtmw-l_8xb320-270e_cocktail14-384x288.py")
    for fmt, var in (("aic", "aic_coco133"), ("crowdpose", "crowdpose_coco133"), ("mpii", "mpii_coco133"),
                     ("halpe136", "halpe_coco133"), ("posetrack18", "posetrack_coco133")):
        assert tuple(map(tuple, mappings[var])) == TO_WHOLEBODY[fmt], fmt
    # Every mapped pair joins points of the same name (MMPose's whole-body names).
    wb = read_config(configs / "_base_" / "datasets" / "coco_wholebody.py")["dataset_info"]["keypoint_info"]
    wb_names = [wb[i]["name"] for i in range(133)]
    for fmt in ("aic", "crowdpose", "mpii", "posetrack18", "halpe26", "ochuman"):
        for s, d in TO_WHOLEBODY[fmt]:
            assert NAMES[fmt][s] == wb_names[d], (fmt, s, d)


def test_whole_body_openpose_colours_match_mmpose():
    configs = mmpose_configs()
    info = read_config(configs / "_base_" / "datasets" / "coco_wholebody_openpose.py")["dataset_info"]
    kpts, links = info["keypoint_info"], info["skeleton_info"]
    names = [kpts[i]["name"] for i in range(134)]
    assert names[:18] == list(pose_mod.KEYPOINT_NAMES)
    colours = [tuple(links[i]["color"]) for i in range(57)]
    assert tuple(colours[17:37]) == pose_mod.LEFT_HAND_LINK_COLORS
    assert tuple(colours[37:57]) == pose_mod.RIGHT_HAND_LINK_COLORS
    for base, hand in ((92, "left"), (113, "right")):
        for i, (a, b) in enumerate(pose_mod.HAND_LINKS):
            link = links[17 + i + (20 if hand == "right" else 0)]["link"]
            assert (names[base + a], names[base + b]) == tuple(link)
        assert {tuple(kpts[base + i]["color"]) for i in range(21)} == {pose_mod.HAND_POINT_COLOR}
    assert {tuple(kpts[i]["color"]) for i in range(24, 92)} == {pose_mod.FACE_POINT_COLOR}
    # feet: MMPose colours them black (not drawn); ours follow OpenPose BODY_25 (see renderers/pose.py)
    assert names[18:24] == ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"]


def test_a_labelled_neck_wins_over_the_shoulders():
    kp = np.zeros((1, 14, 3))
    names = NAMES["aic"]
    for n, xy in (("left_shoulder", (10, 10)), ("right_shoulder", (30, 10)), ("neck", (20, 4))):
        kp[0, names.index(n)] = (*xy, 2)
    assert np.allclose(to_openpose(kp, "aic")[0, 1], (20, 4, 1))
    kp[0, names.index("neck"), 2] = 0
    assert np.allclose(to_openpose(kp, "aic")[0, 1], (20, 10, 1))
    with pytest.raises(BadInput):
        from sources.coco import parse_object
        parse_object({"id": 1, "category_id": 1, "keypoints": [1.0] * 42}, 100, 100, {1: "person"})


def test_pseudo_label_keypoints_of_a_known_count_draw_as_that_format():
    from sentence_builders.generated_tasks import render_keypoints

    joints = json.loads((POSE / "mpii/test_mpii.json").read_text())[0]
    kp = np.concatenate([np.asarray(joints["joints"], float) / 8, np.ones((16, 1))], axis=1)  # 16: MPII, as scores
    canvas = render_keypoints(kp, 256, 256)
    names = NAMES["mpii"]
    at = kp[names.index("left_wrist"), :2].round().astype(int)
    assert tuple(canvas[at[1], at[0]]) == pose_mod.KEYPOINT_COLORS[pose_mod.KEYPOINT_NAMES.index("left_wrist")]
    assert pose_mod.KEYPOINT_COLORS[0] not in {tuple(c) for c in canvas.reshape(-1, 3)}  # MPII has no nose
