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

The files are parsed once, on the driver (each under `max_annotation_bytes`); a unit's payload
carries its videos' own frames and people, so workers never load a file. A frame entry with a
field of the wrong type (`width: "wide"`, a `frame_id` that is not an integer) fails its video;
a `file_name` is resolved under `root` (`..`, absolute, symlinks out: `bad_path`). Entries that
belong to no video (an annotation whose `image_id` names no frame, an image entry that is not
an object) and a video repeated in a second file get audit rows of their own; a file that
cannot be used is one `bad_file` row, and when none is usable `plan()` raises a ConfigError.
"""
from __future__ import annotations

import io
import json
import logging
import posixpath
from typing import Any, Iterator

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from sources.annotation_json import (MAX_ANNOTATION_BYTES, bad_file_entry, contained, file_labels, is_int,
                                     read_json, safe_text)
from sources.listing import is_dir, list_files
from sources.remote import read_bytes
from sources.video_plan import ShortPolicy, check_sentence_length, clip_notes, frames_needed, plan_clips
from uvd.api import BuildContext, Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.keypoint_formats import NUM_KEYPOINTS, FormatOption, detect_format, undetected_reason
from uvd.records import Failed, Item

logger = logging.getLogger(__name__)


class PoseVideoOptions(Strict):
    root: str  # `file_name`s are relative to this folder
    annotations: str  # a folder of per-video JSON files, or one JSON file holding every video
    keypoint_format: FormatOption = "auto"
    frames_per_sentence: int = Field(8, ge=1)  # the sentence holds twice as many images
    strides: list[int] = Field(default_factory=lambda: [1], min_length=1)  # in labelled frames
    clips_per_stride: int = Field(1, ge=1)
    short_policy: ShortPolicy = "reduce_stride"
    max_overlap: float = Field(0.5, ge=0.0, le=1.0)  # see sources/video_plan.py
    max_annotation_bytes: int = Field(MAX_ANNOTATION_BYTES, ge=1)  # per annotation file, read whole
    # the cap decides only which files are usable: that shows in every unit's payload
    operational_keys = frozenset({"max_annotation_bytes"})

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


def _load(path: str, max_bytes: int = MAX_ANNOTATION_BYTES) -> dict[str, Any]:
    data = read_json(path, "pose_video", max_bytes)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ConfigError(f"pose_video: {path} has no `images` list: not a PoseTrack18/COCO-style file")
    for key in ("annotations", "categories"):
        if data.get(key) is not None and not isinstance(data[key], list):
            raise ConfigError(f"pose_video: {path}: `{key}` is a {type(data[key]).__name__}, not a list")
    return data


def _video_of(img: dict[str, Any]) -> str:
    """The video an image belongs to: its `vid_id`, else its file's folder (as audit-safe text)."""
    if img.get("vid_id") is not None:
        return safe_text(str(img["vid_id"]))
    return safe_text(posixpath.dirname(posixpath.normpath(str(img.get("file_name", "")))) or ".")


def _is_id(value: Any) -> bool:
    return is_int(value) or isinstance(value, str)


def _keypoint_names(data: dict[str, Any]) -> list[str] | None:
    names = next((c.get("keypoints") for c in data.get("categories") or [] if isinstance(c, dict)), None)
    return [str(n) for n in names] if isinstance(names, list) else None


def _sort_key(value: Any) -> tuple[int, Any]:
    """track ids and annotation ids of any JSON type in one order (numbers first)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return (0, value)
    return (1, str(value))


class PoseVideoSource(Source):
    name = "pose_video"
    Options = PoseVideoOptions

    def __init__(self, options: PoseVideoOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        check_sentence_length("pose_video", options.frames_per_sentence, ctx.max_images)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        """Every file parsed here, once: each unit carries its videos' own frames and people."""
        files = _files(self.options.annotations)
        labels = file_labels(files)
        videos: dict[str, tuple[str, dict[str, Any]]] = {}  # video → (its file's label, record)
        bad: list[list[str]] = []
        bad_files: list[list[str]] = []
        for f in files:
            try:
                data = _load(f, self.options.max_annotation_bytes)
            except ConfigError as err:
                logger.warning("pose_video: skipping annotation file %s: %s", f, err)
                bad_files.append(bad_file_entry(labels[f], err))
                continue
            bad += self._index_file(data, labels[f], videos)
            del data
        if not videos and not bad and bad_files:
            raise ConfigError("pose_video: no usable annotation file: " + "; ".join(r[1] for r in bad_files))
        rows = [[v, json.dumps(videos[v][1], separators=(",", ":"))] for v in sorted(videos)]
        units: list[dict[str, Any]] = [{"videos": part} for part in chunk(rows, items_per_unit)]
        if bad:
            units = units or [{"videos": []}]
            units[0]["bad_entries"] = bad
        return units + [{"videos": [], "bad_entries": [row]} for row in bad_files]

    @staticmethod
    def _index_file(data: dict[str, Any], label: str, videos: dict[str, tuple[str, dict[str, Any]]]) -> list[list[str]]:
        """Add one file's videos to `videos`; the audit rows of its entries that belong to no video."""
        bad: list[list[str]] = []
        mine: dict[str, dict[str, Any]] = {}
        video_of_image: dict[Any, str] = {}
        names = _keypoint_names(data)
        for i, img in enumerate(data["images"]):
            if not isinstance(img, dict):
                bad.append([f"{label}:images[{i}]", "bad_json: image entry is not an object"])
                continue
            video = _video_of(img)
            if video in videos and videos[video][0] != label:
                if video not in mine:  # once per file that repeats it
                    bad.append([f"{video}@{label}", f"duplicate: video {video!r} of {label} is already in "
                                                    f"{videos[video][0]}"])
                    mine[video] = {"frames": [], "people": [], "names": names}
                continue
            rec = mine.setdefault(video, {"frames": [], "people": [], "names": names})
            if _is_id(img.get("id")):
                video_of_image[img["id"]] = video
            if img.get("is_labeled", True):  # only labelled frames take part
                rec["frames"].append([i, img.get("id"), img.get("file_name"), img.get("frame_id"),
                                      img.get("width"), img.get("height")])
        for i, ann in enumerate(data.get("annotations") or []):
            if not isinstance(ann, dict):
                bad.append([f"{label}:annotations[{i}]", "bad_json: annotation is not an object"])
                continue
            if not ann.get("keypoints"):  # a head box or a crowd region: no person to draw
                continue
            iid = ann.get("image_id")
            if not _is_id(iid) or iid not in video_of_image:
                bad.append([f"{label}:annotations[{i}]", f"bad_json: annotation refers to unknown image_id "
                                                         f"{safe_text(repr(iid))[:80]}"])
                continue
            video = video_of_image[iid]
            if video in videos and videos[video][0] != label:
                continue  # a repeated video: its row says so
            mine[video]["people"].append([iid, ann["keypoints"], ann.get("track_id", 0), ann.get("id", 0)])
        for video, rec in mine.items():
            if video not in videos or videos[video][0] == label:
                videos[video] = (label, rec)
        return bad

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["videos"]) + len(payload.get("bad_entries", []))

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for pseudo_id, reason in payload.get("bad_entries", []):
            yield Failed(pseudo_id, reason)
        for video, record in payload["videos"]:
            try:
                yield self.read_one(video, json.loads(record))
            except Exception as err:  # one bad value fails its video, never the unit
                yield Failed(video, reason_of(err))

    def _format(self, names: list[str] | None, count: int) -> str:
        if self.options.keypoint_format != "auto":
            return self.options.keypoint_format
        fmt = detect_format(names, count)
        if fmt is None:
            raise BadInput("bad_annotation", undetected_reason(names, count))
        return fmt

    @staticmethod
    def _frames(video: str, rows: list[list[Any]]) -> list[dict[str, Any]]:
        """The labelled frames in time order; a frame entry with a field of the wrong type fails the video."""
        frames = []
        for i, iid, file_name, frame_id, width, height in rows:
            where = f"video {video!r}: images[{i}]"
            if not isinstance(file_name, str):
                raise BadInput("bad_annotation", f"{where}: file_name {safe_text(repr(file_name))[:80]} is not a name")
            if iid is not None and not _is_id(iid):
                raise BadInput("bad_annotation", f"{where}: id {iid!r} is not an integer or a string")
            for key, v in (("width", width), ("height", height)):
                if v is not None and not (is_int(v) and v >= 0):
                    raise BadInput("bad_annotation", f"{where}: {key} {v!r} is not a size in pixels")
            frames.append({"id": iid, "file_name": file_name, "frame_id": frame_id, "width": width or 0,
                           "height": height or 0})
        ids = [f["frame_id"] for f in frames]
        if all(v is None for v in ids):  # no time stamps: the file names' order
            frames.sort(key=lambda f: f["file_name"])
        elif all(is_int(v) for v in ids):
            frames.sort(key=lambda f: (f["frame_id"], f["file_name"]))
        else:
            odd = next(v for v in ids if not is_int(v))
            raise BadInput("bad_annotation", f"video {video!r}: frame_id {safe_text(repr(odd))[:80]} is not an integer: "
                                             "its frames have no time order")
        return frames

    def read_one(self, video: str, record: dict[str, Any]) -> Item:
        o = self.options
        frames = self._frames(video, record["frames"])
        if not frames:
            raise BadInput("unpaired", f"video {video!r}: no labelled frame")
        people: dict[Any, list[list[Any]]] = {}
        for person in record["people"]:
            people.setdefault(person[0], []).append(person)
        counts = {len(p[1]) // 3 for anns in people.values() for p in anns if isinstance(p[1], list)}
        fmt = self._format(record.get("names"), max(counts) if counts else 17)
        k = NUM_KEYPOINTS[fmt]
        clips = plan_clips(len(frames), o.frames_per_sentence, o.strides, o.clips_per_stride, o.short_policy,
                           lambda stride: self.ctx.rng(video, "clip", stride), o.max_overlap)
        needed = frames_needed(clips)
        images, keypoints = [], []
        width, height = frames[0]["width"], frames[0]["height"]
        for i in needed:
            img = frames[i]
            images.append(read_bytes(contained(o.root, img["file_name"])))  # BadInput("io", "<url>: ...")
            if not (width and height):  # the official PoseTrack files give no size: the frame's own header does
                width, height = _frame_size(images[-1], img["file_name"])
            keypoints.append(self._people(people.get(img["id"], []) if img["id"] is not None else [], k, fmt, img,
                                          width, height))
        return Item(
            item_id=video, source=self.ctx.dataset, images=images,
            annotations={"keypoints_per_frame": keypoints, "keypoint_format": fmt, "width": width, "height": height,
                         "clips": [c.as_dict() for c in clips], "frame_indices": needed,
                         "frame_names": [frames[i]["file_name"] for i in needed]},
            provenance={"video": video, "num_frames": len(frames), "keypoint_format": fmt,
                        **clip_notes(clips)},
        )

    @staticmethod
    def _people(anns: list[list[Any]], k: int, fmt: str, img: dict[str, Any], width: int,
                height: int) -> np.ndarray:
        out = []
        for _, kps, track_id, aid in sorted(anns, key=lambda a: (_sort_key(a[2]), _sort_key(a[3]))):
            ok = (isinstance(kps, list) and len(kps) == 3 * k
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kps))
            if not ok:
                n = len(kps) if isinstance(kps, list) else type(kps).__name__
                raise BadInput("bad_annotation", f"{img['file_name']}: person {aid!r}: keypoints must be "
                                                 f"{k}×(x, y, v) numbers ({fmt}), got {n}")
            arr = np.asarray(kps, np.float64).reshape(k, 3)
            if not np.isfinite(arr).all() or not np.isin(arr[:, 2], (0, 1, 2)).all():
                raise BadInput("bad_annotation", f"{img['file_name']}: person {aid!r}: a keypoint is "
                                                 "non-finite or its visibility is not 0/1/2")
            # PoseTrack labels head tops that leave the frame: such a point is not drawn (unlabelled).
            labelled = bool((arr[:, 2] > 0).any())
            arr[(arr[:, 0] < 0) | (arr[:, 1] < 0) | (arr[:, 0] > width) | (arr[:, 1] > height), 2] = 0
            if labelled and not (arr[:, 2] > 0).any():  # a person drawn as nothing: never a silent black pose image
                raise BadInput("bad_annotation", f"{img['file_name']}: person {aid!r}: no keypoint "
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
