"""The `video` source + builder, in-process through uvd.unit.run_unit, on real and generated clips.

Generated frames spell their own index (demo/video.index_frame), so every stored
sentence image can be traced back to the frame it came from.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from demo.video import write_video
from tests.support.video_files import read_index, write_overreporting_mp4
from uvd import codec
from uvd.config import BuildConfig, parse_model
from uvd.image import normalise
from uvd.unit import make_source, run_unit

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data" / "video"
GENERATED = ("clip.mp4", "clip.mkv", "clip.avi")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for name in GENERATED:
        write_video(root / "generated" / name, 460)  # ≥ 451: room for 16 frames at stride 30
    (root / "real").mkdir()
    for name in ("flipping_a_pancake.mkv", "corrupted.mp4"):
        shutil.copy(SAMPLES / name, root / "real" / name)
    return root


def config(out: Path, source_args: dict[str, Any], seed: int = 0, items_per_unit: int = 256) -> BuildConfig:
    return parse_model(BuildConfig, {"out": str(out), "seed": seed, "datasets": [
        {"name": "videos", "source": "video", "source_args": source_args, "builder": "video",
         "items_per_unit": items_per_unit}]}, "test")


def build(out: Path, source_args: dict[str, Any], seed: int = 0) -> tuple[list[dict], dict[str, dict], dict]:
    """Run every unit in-process; (sentence rows, audit rows by item id, last unit's stats)."""
    cfg = config(out, source_args, seed)
    ds = cfg.datasets[0]
    rows, audit, stats = [], {}, {}
    for i, payload in enumerate(make_source(cfg, ds).plan(ds.items_per_unit)):
        stats = run_unit(cfg, "videos", f"{i:05d}", payload, str(out))
        rows += pq.read_table(out / "sentences" / "videos" / f"part-{i:05d}.parquet").to_pylist()
        for r in pq.read_table(out / "audit" / "videos" / f"part-{i:05d}.parquet").to_pylist():
            audit[r["item_id"]] = r
    for r in rows:
        r["meta"] = json.loads(r["meta"])
    return rows, audit, stats


@pytest.fixture(scope="module")
def built(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict[str, dict], dict]:
    return build(tmp_path_factory.mktemp("out"), {"root": str(videos)})


def test_generated_clips_hold_exactly_the_planned_frames(built) -> None:
    rows, audit, _ = built
    for name in GENERATED:
        item = f"generated/{name}"
        mine = [r for r in rows if r["meta"]["item_id"] == item]
        assert sorted(r["meta"]["stride"] for r in mine) == [10, 20, 30], item
        for r in mine:
            m = r["meta"]
            assert (r["task"], r["layout"], r["num_images"]) == ("video", "sequence", 16)
            assert m["requested_stride"] == m["stride"]
            assert m["frame_indices"] == list(range(m["start"], m["start"] + 16 * m["stride"], m["stride"]))
            assert m["frame_indices"][-1] < 460 and m["num_frames"] == 460
            assert m["fps"] == pytest.approx(30.0) and m["label"] == "generated"
            assert [read_index(codec.decode(img)) for img in r["images"]] == m["frame_indices"], (item, m["stride"])
        assert audit[item]["status"] == "ok"


def test_real_pancake_clip_drops_its_near_duplicate_reduced_clip_and_matches_direct_decoding(built) -> None:
    import decord

    rows, audit, _ = built
    mine = {r["meta"]["requested_stride"]: r for r in rows if r["meta"]["item_id"] == "real/flipping_a_pancake.mkv"}
    # 310 frames: stride 30 reduces to 20, whose clip would cover ~97% of the stride-20 clip's window.
    assert sorted(mine) == [10, 20]
    for r in mine.values():
        assert r["meta"]["num_frames"] == 310
        assert len(r["meta"]["clips_dropped"]) == 1 and "stride 30 (reduced to 20)" in r["meta"]["clips_dropped"][0]
    vr = decord.VideoReader(str(SAMPLES / "flipping_a_pancake.mkv"))
    for r in mine.values():
        expected = vr.get_batch(r["meta"]["frame_indices"]).asnumpy()
        for img, ref in zip(r["images"], expected):
            diff = np.abs(codec.decode(img).astype(int) - normalise(ref).astype(int)).mean()
            assert diff < 3.0  # JPEG storage only; a neighbouring frame differs by far more
    assert audit["real/flipping_a_pancake.mkv"]["status"] == "ok"


def test_corrupt_sample_ends_in_the_audit_and_nothing_is_lost(built, videos: Path) -> None:
    rows, audit, _ = built
    bad = audit["real/corrupted.mp4"]
    assert bad["status"] == "failed" and bad["reason"] == "decode"
    assert "decord" in bad["error"] and "Invalid data" in bad["error"]
    inputs = {p.relative_to(videos).as_posix() for p in videos.rglob("*.*")}
    assert set(audit) == inputs
    assert {r["meta"]["item_id"] for r in rows} == inputs - {"real/corrupted.mp4"}


def test_builds_are_byte_identical_and_seeded(videos: Path, tmp_path: Path) -> None:
    args = {"root": str(videos / "generated"), "strides": [10]}
    a, _, sa = build(tmp_path / "a", args)
    b, _, sb = build(tmp_path / "b", args)
    assert sa["shard"]["sha256"] == sb["shard"]["sha256"]
    c, _, _ = build(tmp_path / "c", args, seed=7)
    assert [r["meta"]["start"] for r in a] != [r["meta"]["start"] for r in c]


def test_skip_policy_and_too_short(videos: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(SAMPLES / "flipping_a_pancake.mkv", real / "pancake.mkv")
    rows, audit, _ = build(tmp_path / "skip", {"root": str(real), "short_policy": "skip"})
    assert sorted(r["meta"]["stride"] for r in rows) == [10, 20]
    rows, audit, _ = build(tmp_path / "none", {"root": str(real), "short_policy": "skip", "strides": [30]})
    assert rows == [] and audit["pancake.mkv"]["reason"] == "too_short"
    assert "310 frames" in audit["pancake.mkv"]["error"]


def test_list_file_multiple_clips_and_labels(videos: Path, tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"{videos}/generated/clip.mp4\tcooking\n# a comment\n\n{videos}/generated/missing.mp4\tx\n")
    rows, audit, _ = build(tmp_path / "out", {"list_file": str(lst), "strides": [20], "clips_per_stride": 3,
                                              "clip_len": 8})
    starts = [r["meta"]["start"] for r in rows]
    assert len(rows) == 3 and len(set(starts)) == 3 and all(r["num_images"] == 8 for r in rows)
    assert all(r["meta"]["label"] == "cooking" for r in rows)
    for r in rows:
        assert [read_index(codec.decode(img)) for img in r["images"]] == r["meta"]["frame_indices"]
    assert audit[f"{videos}/generated/missing.mp4"]["reason"] == "io"


def test_overreported_av1_empty_and_garbage_files(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    write_overreporting_mp4(root / "over.mp4", 160, 60)
    write_video(root / "av1.mp4", 160, codec="libsvtav1")
    write_video(root / "webm.webm", 160, codec="libvpx-vp9")
    write_video(root / "headeronly.mkv", 0)
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mov").write_text("not a video at all")
    rows, audit, _ = build(tmp_path / "out", {"root": str(root), "strides": [10]})
    by = {r["meta"]["item_id"]: r for r in rows}
    # decord trusts 220 packets; PyAV decodes 160 pictures and the clip is planned on those
    assert by["over.mp4"]["meta"]["num_frames"] == 160 and by["over.mp4"]["meta"]["backend"] == "pyav"
    assert by["av1.mp4"]["meta"]["backend"] == "pyav"  # decord 0.6.0 has no AV1 decoder
    assert by["webm.webm"]["meta"]["backend"] == "decord"
    for r in by.values():
        assert [read_index(codec.decode(img)) for img in r["images"]] == r["meta"]["frame_indices"]
    assert audit["headeronly.mkv"]["reason"] == "empty"
    assert audit["zero.mp4"]["reason"] == "empty"
    assert audit["text.mov"]["reason"] == "decode"
    assert len(audit) == 6


def test_without_fallback_av1_fails_with_a_reason(tmp_path: Path) -> None:
    write_video(tmp_path / "in" / "av1.mp4", 20, codec="libsvtav1")
    rows, audit, _ = build(tmp_path / "out", {"root": str(tmp_path / "in"), "strides": [1], "backend": "decord"})
    assert rows == []
    assert audit["av1.mp4"]["status"] == "failed" and "cannot find video stream" in audit["av1.mp4"]["error"]


@pytest.mark.slow
def test_ray_build_matches_in_process(videos: Path, tmp_path: Path) -> None:
    """Decoder workers start inside Ray workers too, and give the same bytes."""
    from uvd.runner import build as ray_build

    cfg = config(tmp_path / "ray", {"root": str(videos / "real"), "strides": [20]}, items_per_unit=1)
    summary = ray_build(cfg, workers=2)
    assert summary.ok
    ds = cfg.datasets[0]
    for i, payload in enumerate(make_source(cfg, ds).plan(1)):
        unit = f"{i:05d}"
        local = run_unit(cfg, "videos", unit, payload, str(tmp_path / "local"))
        shard = f"sentences/videos/part-{unit}.parquet"
        assert (tmp_path / "ray" / shard).read_bytes() == (tmp_path / "local" / shard).read_bytes()
        assert local["failed"] == (1 if payload["videos"][0][0] == "corrupted.mp4" else 0)
