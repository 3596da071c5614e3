"""Annotated video (DAVIS-style folders) → `interleaved` and `grouped` sentences, in-process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from renderers.palette import PALETTE, colorize
from demo.video import davis_ids, write_davis
from tests.support.video_files import read_index
from uvd import codec
from uvd.config import BuildConfig, parse_model
from uvd.errors import ConfigError
from uvd.image import normalise, sniff
from uvd.unit import make_source, run_unit


@pytest.fixture(scope="module")
def davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("davis")
    write_davis(root, "bear", 30)
    write_davis(root, "tiny", 5, objects=1)  # 5 annotated frames: shorter than 8
    write_davis(root, "sparse", 12)
    for p in sorted((root / "Annotations" / "480p" / "sparse").glob("*.png"))[1::2]:
        p.unlink()  # only every other frame annotated: the rest must not take part
    (root / "JPEGImages" / "480p" / "lonely").mkdir()  # frames without an annotation folder
    shutil.copy(root / "JPEGImages" / "480p" / "tiny" / "00000.jpg", root / "JPEGImages" / "480p" / "lonely")
    return root


def build(out: Path, builder: str, source_args: dict[str, Any]) -> tuple[list[dict], dict[str, dict]]:
    cfg = parse_model(BuildConfig, {"out": str(out), "datasets": [
        {"name": "davis", "source": "annotated_video", "source_args": source_args, "builder": builder}]}, "t")
    ds = cfg.datasets[0]
    rows, audit = [], {}
    for i, payload in enumerate(make_source(cfg, ds).plan(ds.items_per_unit)):
        run_unit(cfg, "davis", f"{i:05d}", payload, str(out))
        rows += pq.read_table(out / "sentences" / "davis" / f"part-{i:05d}.parquet").to_pylist()
        audit.update({r["item_id"]: r for r in pq.read_table(out / "audit" / "davis" / f"part-{i:05d}.parquet").to_pylist()})
    for r in rows:
        r["meta"] = json.loads(r["meta"])
    return rows, audit


def expected_annotation(i: int, objects: int = 2) -> np.ndarray:
    return normalise(colorize(davis_ids(i, objects=objects)), interpolation=cv2.INTER_NEAREST)


def check_pair(frame_bytes: bytes, annot_bytes: bytes, index: int, objects: int = 2) -> None:
    assert sniff(frame_bytes) == "jpeg" and sniff(annot_bytes) == "png"
    assert read_index(codec.decode(frame_bytes)) == index
    # lossless and nearest-neighbour: exactly the palette colours of this frame's own mask
    assert np.array_equal(codec.decode(annot_bytes), expected_annotation(index, objects))


def test_interleaved_pairs_each_frame_with_its_own_annotation(davis: Path, tmp_path: Path) -> None:
    rows, audit = build(tmp_path / "out", "interleaved", {"root": str(davis), "strides": [2, 3]})
    bear = [r for r in rows if r["meta"]["item_id"] == "bear"]
    assert sorted(r["meta"]["stride"] for r in bear) == [2, 3]
    for r in bear:
        assert (r["layout"], r["task"], r["num_images"]) == ("interleaved", "video_segmentation", 16)
        idx = r["meta"]["frame_indices"]
        assert idx == list(range(r["meta"]["start"], r["meta"]["start"] + 8 * r["meta"]["stride"], r["meta"]["stride"]))
        assert r["meta"]["frame_names"] == [f"{i:05d}" for i in idx]
        for k, i in enumerate(idx):
            check_pair(r["images"][2 * k], r["images"][2 * k + 1], i)
    assert audit["bear"]["status"] == "ok"


def test_grouped_puts_frames_first_then_annotations_in_the_same_order(davis: Path, tmp_path: Path) -> None:
    rows, _ = build(tmp_path / "out", "grouped", {"root": str(davis), "strides": [1]})
    r = next(r for r in rows if r["meta"]["item_id"] == "bear")
    assert r["layout"] == "grouped" and r["num_images"] == 16
    idx = r["meta"]["frame_indices"]
    for k, i in enumerate(idx):
        check_pair(r["images"][k], r["images"][8 + k], i)
    colours = {tuple(c) for c in codec.decode(r["images"][8]).reshape(-1, 3)}
    assert colours == {tuple(PALETTE[0]), tuple(PALETTE[1]), tuple(PALETTE[2])}  # nothing blended


def test_short_sparse_and_unpaired_videos(davis: Path, tmp_path: Path) -> None:
    rows, audit = build(tmp_path / "out", "interleaved", {"root": str(davis), "frames_per_sentence": 4,
                                                           "strides": [3]})
    by = {r["meta"]["item_id"]: r for r in rows}
    # sparse: annotations only on frames 0, 2, 4, … ; 6 annotated frames, 4 at stride 3 need 10 → stride 1
    sparse = by["sparse"]["meta"]
    assert sparse["stride"] == 1 and sparse["requested_stride"] == 3 and sparse["num_frames"] == 6
    assert all(int(n) % 2 == 0 for n in sparse["frame_names"])
    for k, name in enumerate(sparse["frame_names"]):
        check_pair(by["sparse"]["images"][2 * k], by["sparse"]["images"][2 * k + 1], int(name))
    tiny = by["tiny"]["meta"]
    assert tiny["stride"] == 1 and len(tiny["frame_indices"]) == 4
    assert audit["lonely"]["status"] == "failed" and audit["lonely"]["reason"] == "unpaired"
    assert set(audit) == {"bear", "tiny", "sparse", "lonely"}

    rows, audit = build(tmp_path / "skip", "grouped", {"root": str(davis), "short_policy": "skip", "strides": [4]})
    assert audit["tiny"]["reason"] == "too_short" and audit["bear"]["status"] == "ok"


def test_rgb_annotations_and_a_different_annotation_size(tmp_path: Path) -> None:
    root = write_davis(tmp_path / "d", "v", 10)
    for p in sorted((root / "Annotations" / "480p" / "v").glob("*.png")):
        ids = np.asarray(Image.open(p))  # palette indices
        rgb = colorize(ids.astype(np.int32))
        Image.fromarray(cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_NEAREST)).save(p)  # RGB, twice the size
    rows, _ = build(tmp_path / "out", "interleaved", {"root": str(root), "strides": [1]})
    r = rows[0]
    for k, i in enumerate(r["meta"]["frame_indices"]):
        check_pair(r["images"][2 * k], r["images"][2 * k + 1], i)


def test_sentences_respect_the_image_cap(davis: Path) -> None:
    cfg = parse_model(BuildConfig, {"datasets": [{"source": "annotated_video", "builder": "grouped",
                                                  "source_args": {"root": str(davis), "frames_per_sentence": 9}}]}, "t")
    with pytest.raises(ConfigError, match="frames_per_sentence"):
        make_source(cfg, cfg.datasets[0])
