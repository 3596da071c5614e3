"""Contact sheets of the bundled pose samples (docs/pose/<format>.png): each photo and its OpenPose
skeleton as built by `source: coco|mpii|pose_video`, `builder: pairs|interleaved`, task `pose`.

Run from the repository root: `PYTHONPATH=. python scripts/pose_contact_sheets.py`.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from uvd import codec
from uvd.config import BuildConfig
from uvd.contact_sheet import grid
from uvd.unit import make_source, run_unit

S = Path("sample_data")
P = S / "pose"
COCO = str(S / "coco")
SAMPLES = {
    "coco": ("coco", {"annotations": str(S / "coco/test_coco.json"), "images_dir": COCO}),
    "coco_wholebody": ("coco", {"annotations": str(P / "coco_wholebody/test_coco_wholebody.json"), "images_dir": COCO}),
    "aic": ("coco", {"annotations": str(P / "aic/test_aic.json"), "images_dir": COCO}),
    "crowdpose": ("coco", {"annotations": str(P / "crowdpose/test_crowdpose.json"), "images_dir": COCO}),
    "mpii": ("mpii", {"annotations": str(P / "mpii/test_mpii.json"), "images_dir": str(P / "mpii")}),
    "halpe26": ("coco", {"annotations": str(P / "halpe26/test_halpe26.json"), "images_dir": COCO}),
    "halpe136": ("coco", {"annotations": str(P / "halpe/test_halpe.json"), "images_dir": COCO}),
    "ochuman": ("coco", {"annotations": str(P / "ochuman/test_ochuman.json"), "images_dir": COCO}),
    "posetrack18": ("pose_video", {"root": str(P / "posetrack18"), "annotations": str(P / "posetrack18/annotations/val"),
                                   "frames_per_sentence": 1}),
}


def sentences(name: str, source: str, args: dict, out: str) -> list[dict]:
    builder = ("interleaved", {"task": "video_pose"}) if source == "pose_video" else \
        ("pairs", {"task": "pose", "pairs": 1, "min_pairs": 1})
    if name == "aic":
        args = {**args, "keypoint_format": "aic"}
    cfg = BuildConfig.model_validate({"out": out, "datasets": [{"name": name, "source": source, "source_args": args,
                                                                 "builder": builder[0], "builder_args": builder[1]}]})
    ds = cfg.datasets[0]
    for i, payload in enumerate(make_source(cfg, ds).plan(ds.items_per_unit)):
        run_unit(cfg, ds.key, f"{i:05d}", payload, out)
    return [r for p in sorted(Path(out, "sentences", name).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def main() -> None:
    Path("docs/pose").mkdir(parents=True, exist_ok=True)
    for name, (source, args) in SAMPLES.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows = sentences(name, source, args, tmp)
        images, labels = [], []
        for r in rows[-3:]:  # the last three photos: small sheets (the busiest COCO photos sort last)
            meta = json.loads(r["meta"])
            item = (meta.get("item_ids") or [meta.get("item_id")])[0]
            for k, b in enumerate(r["images"]):
                images.append(codec.decode(b))
                labels.append(f"{item} {'photo' if k % 2 == 0 else 'skeleton'}")
        sheet = grid(images, columns=6, labels=[lb[-24:] for lb in labels], tile=144,
                     title=f"{name}: {source} -> OpenPose (3 of {len(rows)} photos)")
        # A 256-colour palette keeps the sheet small; the skeletons' colours survive it.
        Image.fromarray(sheet).quantize(256, dither=Image.Dither.NONE).save(f"docs/pose/{name}.png", optimize=True)
        print(f"docs/pose/{name}.png: {len(rows)} photos")


if __name__ == "__main__":
    main()
