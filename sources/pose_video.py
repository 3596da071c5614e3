"""`pose_video`: video with per-frame human keypoints, PoseTrack18's layout (as MMPose ships it).

    <root>/annotations/val/<video>.json      one COCO-style file per video (or MMPose's merged
                                             posetrack18_val.json: every video in one file)
    <root>/images/val/<video>/000000.jpg     frames; an image's `file_name` is relative to <root>

An `images` entry is a frame: `id`, `file_name`, `vid_id`, `frame_id` (time order), `width`,
`height`, `is_labeled`. An annotation is one person in one frame: `image_id`, `keypoints`
(K×3, x, y, v), `track_id`. The format comes from the category's keypoint names
(uvd/keypoint_formats.py; PoseTrack18's 17 with head_bottom/head_top) unless
`keypoint_format` says otherwise.

One Item per video. Only labelled frames take part (PoseTrack labels a window of each video);
clips of `frames_per_sentence` labelled frames are planned like `video` clips
(sources/video_plan.py: strides, short-video policy, no near-duplicate clips); only their
files are read. The Item follows uvd/annotations.py: `images` = frame bytes,
`keypoints_per_frame` = per frame a (P, K, 3) array (P = 0 for a labelled frame without
people), `keypoint_format`, `width`/`height`, `clips`, `frame_indices`, `frame_names`. The
`interleaved` and `grouped` builders draw the skeletons. `root` and `annotations` may be fsspec
URLs (s3://, memory://, local): the JSON and frames are read as bytes; a missing frame fails its
video as `io` naming its URL. A malformed person (wrong count,
non-finite, visibility not 0/1/2) fails its video (`bad_annotation: ...`); a point past the
frame (PoseTrack labels head tops that leave it) counts as unlabelled.
"""
from __future__ import annotations

import io
import posixpath
from typing import Any, Iterator

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from sources.coco import read_json
from sources.listing import is_dir, list_files
from sources.remote import read_bytes
from sources.video_plan import ShortPolicy, check_sentence_length, clip_notes, frames_needed, plan_clips
from uvd.api import BuildContext, Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError
from uvd.keypoint_formats import NUM_KEYPOINTS, FormatOption, detect_format, undetected_reason
from uvd.records import Failed, Item
from uvd.storage import join


class PoseVideoOptions(Strict):
    root: str  # `file_name`s are relative to this folder
    annotations: str  # a folder of per-video JSON files, or one JSON file holding every video
    keypoint_format: FormatOption = "auto"
    frames_per_sentence: int = Field(8, ge=1)  # the sentence holds twice as many images
    strides: list[int] = Field(default_factory=lambda: [1], min_length=1)  # in labelled frames
    clips_per_stride: int = Field(1, ge=1)
    short_policy: ShortPolicy = "reduce_stride"
    max_overlap: float = Field(0.5, ge=0.0, le=1.0)  # see sources/video_plan.py

    @model_validator(mode="after")
    def _check(self) -> "PoseVideoOptions":
        require_path(self.root, "pose_video.root")
        require_path(self.annotations, "pose_video.annotations")
        return self


def _files(path: str) -> list[str]:
    """The annotation files: `path` itself, or the .json files directly in that folder (URLs of its store)."""
    if not is_dir(path):
        return [path]
    files = [url for _, url in list_files(path, [".json"], top_level=True)]
    if not files:
        raise ConfigError(f"pose_video: no JSON file in {path}")
    return files


def _load(path: str) -> dict[str, Any]:
    data = read_json(path, "pose_video")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(f"pose_video: {path} has no `images` list: not a PoseTrack18/COCO-style file")
    return data


def _video_of(img: dict[str, Any]) -> str:
    """The video an image belongs to: its `vid_id`, else its file's folder."""
    if img.get("vid_id") is not None:
        return str(img["vid_id"])
    return posixpath.dirname(posixpath.normpath(str(img.get("file_name", "")))) or "."


class PoseVideoSource(Source):
    name = "pose_video"
    Options = PoseVideoOptions

    def __init__(self, options: PoseVideoOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        check_sentence_length("pose_video", options.frames_per_sentence, ctx.max_images)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        rows: dict[str, str] = {}
        for f in _files(self.options.annotations):
            for img in _load(f)["images"]:
                if isinstance(img, dict):
                    rows.setdefault(_video_of(img), f)
        return [{"videos": part} for part in chunk([[v, rows[v]] for v in sorted(rows)], items_per_unit)]

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        cache: dict[str, dict[str, Any]] = {}
        for video, path in payload["videos"]:
            try:
                if path not in cache:
                    cache[path] = _load(path)
                data = cache[path]
                yield self.read_one(video, data)
            except ConfigError as err:
                yield Failed(video, f"bad_json: {err}")
            except BadInput as err:
                yield Failed(video, str(err))

    def _format(self, data: dict[str, Any], count: int) -> str:
        if self.options.keypoint_format != "auto":
            return self.options.keypoint_format
        names = next((c.get("keypoints") for c in data.get("categories") or [] if isinstance(c, dict)), None)
        fmt = detect_format(names, count)
        if fmt is None:
            raise BadInput("bad_annotation", undetected_reason(names, count))
        return fmt

    def read_one(self, video: str, data: dict[str, Any]) -> Item:
        o = self.options
        frames = [img for img in data["images"] if isinstance(img, dict) and _video_of(img) == video
                  and img.get("is_labeled", True) and isinstance(img.get("file_name"), str)]
        if not frames:
            raise BadInput("unpaired", f"video {video!r}: no labelled frame")
        frames.sort(key=lambda img: (img.get("frame_id", 0), img["file_name"]))
        people: dict[Any, list[dict[str, Any]]] = {}
        for ann in data.get("annotations") or []:
            if isinstance(ann, dict) and ann.get("keypoints"):
                people.setdefault(ann.get("image_id"), []).append(ann)
        counts = {len(a["keypoints"]) // 3 for anns in people.values() for a in anns}
        fmt = self._format(data, max(counts) if counts else 17)
        k = NUM_KEYPOINTS[fmt]
        clips = plan_clips(len(frames), o.frames_per_sentence, o.strides, o.clips_per_stride, o.short_policy,
                           lambda stride: self.ctx.rng(video, "clip", stride), o.max_overlap)
        needed = frames_needed(clips)
        images, keypoints = [], []
        width, height = int(frames[0].get("width") or 0), int(frames[0].get("height") or 0)
        for i in needed:
            img = frames[i]
            images.append(read_bytes(join(o.root, img["file_name"])))  # BadInput("io", "<url>: ...")
            if not (width and height):  # the official PoseTrack files give no size: the frame's own header does
                width, height = _frame_size(images[-1], img["file_name"])
            keypoints.append(self._people(people.get(img.get("id"), []), k, fmt, img, width, height))
        return Item(
            item_id=video, source=self.ctx.dataset, images=images,
            annotations={"keypoints_per_frame": keypoints, "keypoint_format": fmt, "width": width, "height": height,
                         "clips": [c.as_dict() for c in clips], "frame_indices": needed,
                         "frame_names": [frames[i]["file_name"] for i in needed]},
            provenance={"video": video, "num_frames": len(frames), "keypoint_format": fmt,
                        **clip_notes(clips)},
        )

    @staticmethod
    def _people(anns: list[dict[str, Any]], k: int, fmt: str, img: dict[str, Any], width: int,
                height: int) -> np.ndarray:
        out = []
        for ann in sorted(anns, key=lambda a: (a.get("track_id", 0), a.get("id", 0))):
            kps = ann["keypoints"]
            try:
                arr = np.asarray(kps, np.float64).reshape(k, 3)
            except (TypeError, ValueError):
                n = len(kps) if isinstance(kps, list) else type(kps).__name__
                raise BadInput("bad_annotation", f"{img['file_name']}: person {ann.get('id', '?')}: keypoints must be "
                                                 f"{k}×(x, y, v) numbers ({fmt}), got {n}") from None
            if not np.isfinite(arr).all() or not np.isin(arr[:, 2], (0, 1, 2)).all():
                raise BadInput("bad_annotation", f"{img['file_name']}: person {ann.get('id', '?')}: a keypoint is "
                                                 "non-finite or its visibility is not 0/1/2")
            # PoseTrack labels head tops that leave the frame: such a point is not drawn (unlabelled).
            labelled = bool((arr[:, 2] > 0).any())
            arr[(arr[:, 0] < 0) | (arr[:, 1] < 0) | (arr[:, 0] > width) | (arr[:, 1] > height), 2] = 0
            if labelled and not (arr[:, 2] > 0).any():  # a person drawn as nothing: never a silent black pose image
                raise BadInput("bad_annotation", f"{img['file_name']}: person {ann.get('id', '?')}: no keypoint "
                                                 f"inside the {width}x{height} frame")
            out.append(arr)
        return np.array(out, np.float64).reshape(len(out), k, 3)


def _frame_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from an encoded frame's header, without decoding its pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception as err:
        raise BadInput("decode", f"{name}: {type(err).__name__}: {err}") from None
