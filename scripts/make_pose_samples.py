"""Write sample_data/pose/: real pose annotations in every layout the project reads.

Copied as they are (MMPose @ 759b39c1, tests/data/, Apache-2.0, via /work/shared/data/pose):
MPII (MMPose's JSON layout, 5 photos), Halpe-136 (COCO-style, on the COCO photos of
sample_data/coco), PoseTrack18 (per-video and merged JSON, one labelled frame per video).

Derived here, each in its dataset's exact JSON layout (MMPose's COCO-style converted files),
from those real annotations by MMPose 1.3.2's own index mappings (uvd/keypoint_formats.py):
COCO-WholeBody, Halpe-26, AI Challenger, CrowdPose, OCHuman from the Halpe-136 people (same COCO
photos: Halpe's head → AIC head_top / CrowdPose top_head, Halpe's neck → neck, feet, face and
hands → COCO-WholeBody's foot/face/hand parts); MPII in COCO style from the MPII JSON. No point
is invented: a point Halpe does not label stays unlabelled (v = 0).

Run from the repository root: `python scripts/make_pose_samples.py [SHARED_POSE_DIR]`.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from PIL import Image

from uvd.keypoint_formats import NAMES, TO_WHOLEBODY

OUT = Path("sample_data/pose")
COCO_PHOTOS = Path("sample_data/coco")


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")


def _category(fmt: str, names: list[str] | None = None) -> dict:
    return {"supercategory": "person", "id": 1, "name": "person", "keypoints": names or list(NAMES[fmt] or ()),
            "skeleton": []}


def _pick(kps: list[float], idx: list[int | None]) -> list[float]:
    """Points `idx` of a flat (x, y, v) list; None → an unlabelled point."""
    out: list[float] = []
    for i in idx:
        out += [0, 0, 0] if i is None else kps[3 * i:3 * i + 3]
    return out


def _labelled(kps: list[float]) -> int:
    return sum(1 for v in kps[2::3] if v > 0)


def _box(kps: list[float]) -> list[float]:
    pts = [(kps[i], kps[i + 1]) for i in range(0, len(kps), 3) if kps[i + 2] > 0]
    if not pts:
        return [0.0, 0.0, 0.0, 0.0]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [float(min(xs)), float(min(ys)), float(max(xs) - min(xs)), float(max(ys) - min(ys))]


def from_halpe(halpe: dict) -> None:
    h_names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
               "right_knee", "left_ankle", "right_ankle", "head", "neck"]
    alias = {"head_top": "head", "top_head": "head"}
    images = [{k: img[k] for k in ("file_name", "height", "width", "id")} for img in halpe["images"]]
    people = [a for a in halpe["annotations"] if _labelled(a["keypoints"]) > 0]

    def layout(fmt: str, extra_image: dict | None = None) -> dict:
        idx = [h_names.index(alias.get(n, n)) for n in NAMES[fmt]]
        anns = []
        for a in people:
            kps = _pick(a["keypoints"], idx)
            anns.append({"num_keypoints": _labelled(kps), "iscrowd": a["iscrowd"], "keypoints": kps,
                         "image_id": a["image_id"], "bbox": a["bbox"], "category_id": 1, "id": a["id"]})
        imgs = [{**img, **(extra_image or {})} for img in images]
        return {"images": imgs, "annotations": anns, "categories": [_category(fmt)]}

    _write(OUT / "aic" / "test_aic.json", layout("aic"))
    crowd = layout("crowdpose", {"crowdIndex": 0.0})
    crowd["categories"] = [_category("crowdpose", list(NAMES["crowdpose"][:12]) + ["head", "neck"])]  # CrowdPose's own spelling
    _write(OUT / "crowdpose" / "test_crowdpose.json", crowd)
    _write(OUT / "ochuman" / "test_ochuman.json", layout("ochuman"))
    # Halpe-26: the first 26 Halpe points (body, head, neck, hip, feet).
    h26 = {"images": images, "categories": [_category("halpe26")], "annotations": [
        {**{k: a[k] for k in ("iscrowd", "image_id", "bbox", "category_id", "id")},
         "keypoints": a["keypoints"][:78], "num_keypoints": _labelled(a["keypoints"][:78])} for a in people]}
    _write(OUT / "halpe26" / "test_halpe26.json", h26)
    # COCO-WholeBody: body 17, then foot/face/hands as separate fields (COCO-WholeBody v1.0 layout).
    to_wb = dict((d, s) for s, d in TO_WHOLEBODY["halpe136"])
    anns = []
    for a in people:
        wb = _pick(a["keypoints"], [to_wb.get(d) for d in range(133)])
        parts = {"foot_kpts": wb[17 * 3:23 * 3], "face_kpts": wb[23 * 3:91 * 3],
                 "lefthand_kpts": wb[91 * 3:112 * 3], "righthand_kpts": wb[112 * 3:133 * 3]}
        ann = {"segmentation": [], "num_keypoints": _labelled(wb[:51]), "area": a["area"], "iscrowd": a["iscrowd"],
               "keypoints": wb[:51], "image_id": a["image_id"], "bbox": a["bbox"], "category_id": 1, "id": a["id"],
               **parts}
        for name, key in (("face", "face_kpts"), ("lefthand", "lefthand_kpts"), ("righthand", "righthand_kpts")):
            ann[f"{name}_box"] = _box(parts[key])
            ann[f"{name}_valid"] = _labelled(parts[key]) > 0
        ann["foot_valid"] = _labelled(parts["foot_kpts"]) > 0
        anns.append(ann)
    wb_cat = _category("coco")
    _write(OUT / "coco_wholebody" / "test_coco_wholebody.json",
           {"images": images, "annotations": anns, "categories": [wb_cat]})


def mpii_coco_style(mpii: list, photos: Path) -> None:
    images, anns = [], []
    for i, name in enumerate(sorted({p["image"] for p in mpii})):
        w, h = Image.open(photos / name).size
        images.append({"file_name": name, "height": h, "width": w, "id": i + 1})
    ids = {img["file_name"]: img["id"] for img in images}
    for j, p in enumerate(mpii):
        kps: list[float] = []
        for (x, y), v in zip(p["joints"], p["joints_vis"]):
            kps += [float(x), float(y), 2 if v else 0] if v else [0, 0, 0]
        anns.append({"num_keypoints": _labelled(kps), "iscrowd": 0, "keypoints": kps, "image_id": ids[p["image"]],
                     "bbox": _box(kps), "category_id": 1, "id": j + 1})
    _write(OUT / "mpii" / "test_mpii_coco.json", {"images": images, "annotations": anns,
                                                   "categories": [_category("mpii")]})


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/pose")
    (OUT / "mpii").mkdir(parents=True, exist_ok=True)
    for f in sorted((shared / "mpii").iterdir()):
        if f.name != "test_mpii_trb.json":
            shutil.copyfile(f, OUT / "mpii" / f.name)
    (OUT / "halpe").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "halpe" / "test_halpe.json", OUT / "halpe" / "test_halpe.json")
    pt = OUT / "posetrack18"
    for sub in ("annotations", "images"):
        if (pt / sub).exists():
            shutil.rmtree(pt / sub)
        shutil.copytree(shared / "posetrack18" / sub, pt / sub, copy_function=shutil.copyfile)
    from_halpe(json.loads((shared / "halpe" / "test_halpe.json").read_text()))
    mpii_coco_style(json.loads((shared / "mpii" / "test_mpii.json").read_text()), shared / "mpii")


if __name__ == "__main__":
    main()
