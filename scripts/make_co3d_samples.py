"""Write sample_data/co3d/: a tiny dataset in CO3D v2's release layout (facebookresearch/co3d,
co3d/dataset/data_types.py), for tests and `configs/uvdv1.yaml`'s default.

No CO3D file is available here, so the pictures are real video frames instead (the H.264 clip
sample_data/video/flipping_a_pancake.mkv, from dmlc/decord), cut into "sequences" the way CO3D's
are phone-video frames; everything else is CO3D's own format:

    <root>/<category>/frame_annotations.jgz      gzipped JSON list of FrameAnnotation
    <root>/<category>/sequence_annotations.jgz   gzipped JSON list of SequenceAnnotation
    <root>/<category>/<sequence>/images/frameNNNNNN.jpg     (frame number from 1)
    <root>/<category>/<sequence>/masks/frameNNNNNN.png      Prob(fg) × 255, 8-bit
    <root>/<category>/<sequence>/depth_masks/frameNNNNNN.png

Masks are the whole frame and cameras a fixed identity pose: placeholders in the right fields, not
measurements. Sequences: two of 40 frames and one of 10 (shorter than a 16-view sentence).

Run from the repository root: `python scripts/make_co3d_samples.py`.
"""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image

VIDEO = Path("sample_data/video/flipping_a_pancake.mkv")
OUT = Path("sample_data/co3d")
CATEGORY = "pancake"
SEQUENCES = {"1_100_200": (0, 40), "2_300_400": (150, 190), "3_500_600": (280, 290)}  # name: frames [a, b)
SIZE = (160, 90)  # W, H: small files


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as box:
        return [f.to_ndarray(format="rgb24") for f in box.decode(video=0)]


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def jgz(path: Path, data: object) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: the same bytes on every run
        f.write(json.dumps(data).encode("utf8"))


def main() -> None:
    video = frames(VIDEO)
    annotations, sequences = [], []
    for name, (a, b) in SEQUENCES.items():
        seq = OUT / CATEGORY / name
        for sub in ("images", "masks", "depth_masks"):
            (seq / sub).mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(video[a:b]):
            number = k + 1
            stem = f"frame{number:06d}"
            img = Image.fromarray(frame).resize(SIZE, Image.BICUBIC)
            img.save(seq / "images" / f"{stem}.jpg", "JPEG", quality=85)
            full = np.full((SIZE[1], SIZE[0]), 255, np.uint8)
            (seq / "masks" / f"{stem}.png").write_bytes(png(full))
            (seq / "depth_masks" / f"{stem}.png").write_bytes(png(full))
            rel = f"{CATEGORY}/{name}"
            annotations.append({
                "sequence_name": name, "frame_number": number, "frame_timestamp": round(k / 30.0, 6),
                "image": {"path": f"{rel}/images/{stem}.jpg", "size": [SIZE[1], SIZE[0]]},
                "depth": {"path": f"{rel}/depths/{stem}.jpg.geometric.png", "scale_adjustment": 1.0,
                          "mask_path": f"{rel}/depth_masks/{stem}.png"},
                "mask": {"path": f"{rel}/masks/{stem}.png", "mass": float(SIZE[0] * SIZE[1])},
                "viewpoint": {"R": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "T": [0.0, 0.0, 5.0],
                              "focal_length": [2.0, 2.0], "principal_point": [0.0, 0.0],
                              "intrinsics_format": "ndc_isotropic"},
                "meta": {"frame_type": "train_known"}})
        sequences.append({"sequence_name": name, "category": CATEGORY,
                          "video": {"path": f"{CATEGORY}/{name}/video.mp4", "length": round((b - a) / 30.0, 6)},
                          "point_cloud": None, "viewpoint_quality_score": None})
    jgz(OUT / CATEGORY / "frame_annotations.jgz", annotations)
    jgz(OUT / CATEGORY / "sequence_annotations.jgz", sequences)
    print(f"wrote {len(annotations)} frames of {len(sequences)} sequences under {OUT}")


if __name__ == "__main__":
    main()
