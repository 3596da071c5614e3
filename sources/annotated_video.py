"""`annotated_video`: frames with one annotation image each, DAVIS-style folders.

    <root>/JPEGImages/<resolution>/<video>/00000.jpg
    <root>/Annotations/<resolution>/<video>/00000.png   palette PNG of object ids (or an RGB image)

One Item per video. Only frames that have an annotation take part (DAVIS test videos
annotate the first frame only). Clips of `frames_per_sentence` annotated frames are planned
like `video` clips (strides, ctx.rng(video, stride), short-video policy); only their files
are read. Items: `images` = frame bytes, `annotations["masks"]` = per frame either an H×W
int32 id map (0 = background; colours are the builder's job) or an H×W×3 RGB image.
A video the `image_set` names but the frames folder lacks gets an audit row (`missing`); any
error while reading one video fails that video only.
"""
from __future__ import annotations

import io
import posixpath
from typing import Any, Iterator

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from sources.listing import is_dir, list_dirs, list_files, read_text
from sources.remote import read_bytes
from sources.segmentation import decode_label_map
from sources.video_plan import ShortPolicy, check_sentence_length, clip_notes, frames_needed, plan_clips
from uvd.api import BuildContext, Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError, reason_of
from uvd.image import decode_image
from uvd.records import Failed, Item
from uvd.storage import join

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png"}


class AnnotatedVideoOptions(Strict):
    root: str
    frames_dir: str = "JPEGImages"
    annotations_dir: str = "Annotations"
    resolution: str | None = None  # sub-folder such as "480p"; None: "480p" when present, else none
    image_set: str | None = None  # optional list of video names (DAVIS ImageSets/2017/train.txt)
    frames_per_sentence: int = Field(8, ge=1)  # the sentence holds twice as many images
    strides: list[int] = Field(default_factory=lambda: [2], min_length=1)
    clips_per_stride: int = Field(1, ge=1)
    short_policy: ShortPolicy = "reduce_stride"
    max_overlap: float = Field(0.5, ge=0.0, le=1.0)  # near-duplicate reduced clips (sources/video_plan.py)
    ignore_index: int | None = 255  # id-map pixels with this value count as background

    @model_validator(mode="after")
    def _check(self) -> "AnnotatedVideoOptions":
        require_path(self.root, "annotated_video.root")
        if self.image_set:
            require_path(self.image_set, "annotated_video.image_set")
        if any(s < 1 for s in self.strides):
            raise ValueError("strides must be ≥ 1")
        return self


def decode_annotation(data: bytes, max_pixels: int, ignore_index: int | None) -> np.ndarray:
    """An annotation PNG → H×W int32 ids (palette / grey PNGs keep their indices) or H×W×3 RGB."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode = im.mode
    except Exception as err:
        raise BadInput("decode", f"annotation: {type(err).__name__}: {err}") from None
    if mode in ("RGB", "RGBA"):
        return decode_image(data)
    ids = decode_label_map(data, max_pixels)
    if ignore_index is not None:
        ids[ids == ignore_index] = 0
    return ids


def _files_by_stem(folder: str, suffixes: set[str]) -> dict[str, str]:
    """Stem → URL of the files directly in `folder`."""
    return {posixpath.splitext(rel)[0]: url for rel, url in list_files(folder, suffixes, top_level=True)}


class AnnotatedVideoSource(Source):
    name = "annotated_video"
    Options = AnnotatedVideoOptions

    def __init__(self, options: AnnotatedVideoOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        check_sentence_length("annotated_video", options.frames_per_sentence, ctx.max_images)

    def _dirs(self) -> tuple[str, str]:
        o = self.options
        frames, annots = join(o.root, o.frames_dir), join(o.root, o.annotations_dir)
        res = o.resolution if o.resolution is not None else ("480p" if is_dir(join(frames, "480p")) else "")
        return (join(frames, res), join(annots, res)) if res else (frames, annots)

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        frames, annots = self._dirs()
        if not is_dir(frames):
            raise ConfigError(f"annotated_video: no frames folder {frames}")
        names = [name for name, _ in list_dirs(frames)]
        missing: list[list[str]] = []
        if self.options.image_set:
            wanted = {ln.strip() for ln in read_text(self.options.image_set).splitlines() if ln.strip()}
            missing = [[n, f"missing: video {n!r} of the image_set has no folder in {frames}"]
                       for n in sorted(wanted - set(names))]
            names = [n for n in names if n in wanted]
        rows = [[n, join(frames, n), join(annots, n)] for n in names]
        units: list[dict[str, Any]] = [{"videos": part} for part in chunk(rows, items_per_unit)]
        if missing:  # listed but absent: each still ends in the audit
            units = units or [{"videos": []}]
            units[0]["bad_entries"] = missing
        return units

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["videos"]) + len(payload.get("bad_entries", []))

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for name, reason in payload.get("bad_entries", []):
            yield Failed(name, reason)
        for video, fdir, adir in payload["videos"]:
            try:
                yield self.read_one(video, fdir, adir)
            except Exception as err:  # one bad frame or mask fails its video, never the unit
                yield Failed(video, reason_of(err))

    def read_one(self, video: str, fdir: str, adir: str) -> Item:
        o = self.options
        if not is_dir(adir):
            raise BadInput("unpaired", f"no annotation folder for video {video!r}")
        frames, annots = _files_by_stem(fdir, FRAME_SUFFIXES), _files_by_stem(adir, {".png"})
        paired = sorted(set(frames) & set(annots))  # DAVIS names are zero-padded: text order is time order
        if not paired:
            raise BadInput("unpaired", f"video {video!r}: no frame has an annotation")
        clips = plan_clips(len(paired), o.frames_per_sentence, o.strides, o.clips_per_stride, o.short_policy,
                           lambda stride: self.ctx.rng(video, "clip", stride), o.max_overlap)
        needed = frames_needed(clips)
        images, masks = [], []
        for i in needed:
            try:
                images.append(read_bytes(frames[paired[i]]))
                masks.append(decode_annotation(read_bytes(annots[paired[i]]), self.ctx.image.max_pixels, o.ignore_index))
            except BadInput as err:
                raise BadInput(err.kind, f"frame {paired[i]}: {str(err).split(': ', 1)[-1]}") from None
        return Item(
            item_id=video, source=self.ctx.dataset, images=images,
            annotations={"masks": masks, "clips": [c.as_dict() for c in clips], "frame_indices": needed,
                         "frame_names": [paired[i] for i in needed]},
            provenance={"video": video, "num_frames": len(paired), "unannotated_frames": len(frames) - len(paired),
                        **clip_notes(clips)},
        )
