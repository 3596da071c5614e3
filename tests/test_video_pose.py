"""Video with pose: PoseTrack18-style frames + per-frame keypoints → interleaved and grouped sentences."""
from __future__ import annotations

import json

import numpy as np

from conftest import build_dataset
from renderers import pose as pose_mod
from support.posetrack import H, W, frame_grey, person_at, write_posetrack_video
from uvd import codec
from uvd.image import fit_transform


def _build(tmp_path, builder: str, official: bool = False, **source_args):
    ann = write_posetrack_video(tmp_path / "pt", labelled=range(2, 12), official=official)
    return build_dataset(tmp_path / builder, {
        "name": "posetrack", "source": "pose_video", "builder": builder, "builder_args": {"task": "video_pose"},
        "source_args": {"root": str(tmp_path / "pt"), "annotations": str(ann), "frames_per_sentence": 4,
                        "strides": [2], **source_args}})


def _frame_of(img: np.ndarray) -> int:
    return int(round((float(img.mean()) - 20) / 9))


def _check_skeleton(skeleton: np.ndarray, frame: int) -> None:
    t = fit_transform(W, H, 256, "center_crop")
    kp = person_at(frame)
    pts = t.points(kp[:, :2])
    nose = pts[0]
    assert tuple(skeleton[int(round(nose[1])), int(round(nose[0]))]) == pose_mod.KEYPOINT_COLORS[0]
    neck = t.points(((kp[5, :2] + kp[6, :2]) / 2)[None])[0]
    assert tuple(skeleton[int(round(neck[1])), int(round(neck[0]))]) == pose_mod.KEYPOINT_COLORS[1]
    # PoseTrack18 has no eyes: their colours are nowhere
    colours = {tuple(c) for c in skeleton.reshape(-1, 3)}
    assert pose_mod.KEYPOINT_COLORS[14] not in colours and pose_mod.KEYPOINT_COLORS[15] not in colours


def test_interleaved_pose_video_alternates_frames_and_their_skeletons(tmp_path):
    rows, audit, _ = _build(tmp_path, "interleaved")
    assert audit["000042"]["status"] == "ok" and len(rows) == 1
    r = rows[0]
    meta = json.loads(r["meta"])
    assert (r["layout"], r["task"], r["num_images"]) == ("interleaved", "video_pose", 8)
    # labelled frames are 2..11; clip indices count labelled frames, stride 2
    assert meta["stride"] == 2 and len(meta["frame_indices"]) == 4
    imgs = [codec.decode(b) for b in r["images"]]
    frames = [2 + i for i in meta["frame_indices"]]
    for k, f in enumerate(frames):
        assert _frame_of(imgs[2 * k]) == f
        _check_skeleton(imgs[2 * k + 1], f)
    assert meta["frame_names"][0].endswith(f"{frames[0]:06d}.jpg")


def test_official_posetrack_file_without_frame_sizes_builds_visible_skeletons(tmp_path):
    """The PoseTrack18/21 release has no width/height per image: the size comes from the frame itself
    (before, every point fell outside a 0x0 frame and the skeletons were written black)."""
    rows, audit, _ = _build(tmp_path, "interleaved", official=True)
    assert audit["000042"]["status"] == "ok" and len(rows) == 1
    meta = json.loads(rows[0]["meta"])
    imgs = [codec.decode(b) for b in rows[0]["images"]]
    for k, i in enumerate(meta["frame_indices"]):
        assert imgs[2 * k + 1].max() > 0
        _check_skeleton(imgs[2 * k + 1], 2 + i)


def test_a_person_wholly_outside_the_frame_is_audited_not_drawn_black(tmp_path):
    ann = write_posetrack_video(tmp_path / "pt", frames=6)
    path = next(ann.glob("*.json"))
    data = json.loads(path.read_text())
    kp = np.array(data["annotations"][0]["keypoints"], np.float64).reshape(-1, 3)
    kp[:, 0] += 10 * W  # far right of the frame, every point still labelled
    data["annotations"][0]["keypoints"] = kp.reshape(-1).tolist()
    path.write_text(json.dumps(data))
    rows, audit, _ = build_dataset(tmp_path / "b", {
        "name": "posetrack", "source": "pose_video", "builder": "interleaved", "builder_args": {"task": "video_pose"},
        "source_args": {"root": str(tmp_path / "pt"), "annotations": str(ann), "frames_per_sentence": 4,
                        "strides": [1]}})
    assert rows == [] or all(json.loads(r["meta"])["frame_indices"][0] != 0 for r in rows)
    assert audit["000042"]["status"] != "ok"
    assert "no keypoint inside the 320x240 frame" in audit["000042"]["error"]


def test_grouped_pose_video_puts_frames_first_then_skeletons(tmp_path):
    rows, _, _ = _build(tmp_path, "grouped")
    r = rows[0]
    meta = json.loads(r["meta"])
    imgs = [codec.decode(b) for b in r["images"]]
    frames = [2 + i for i in meta["frame_indices"]]
    assert [_frame_of(i) for i in imgs[:4]] == frames
    for img, f in zip(imgs[4:], frames):
        _check_skeleton(img, f)
    assert r["images"][4][:4] == b"\x89PNG" and r["images"][0][:2] == b"\xff\xd8"  # skeletons lossless, frames JPEG


def test_a_malformed_person_fails_its_video(tmp_path):
    ann = write_posetrack_video(tmp_path / "pt", frames=6)
    path = next(ann.glob("*.json"))
    data = json.loads(path.read_text())
    data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:-3]
    path.write_text(json.dumps(data))
    rows, audit, _ = build_dataset(tmp_path / "o", {
        "name": "posetrack", "source": "pose_video", "builder": "interleaved",
        "source_args": {"root": str(tmp_path / "pt"), "annotations": str(ann), "frames_per_sentence": 6}})
    assert not rows and audit["000042"]["reason"] == "bad_annotation" and "17×(x, y, v)" in audit["000042"]["error"]
