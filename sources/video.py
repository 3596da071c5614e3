"""`video`: folders of videos (Kinetics-style class folders give labels) or a list file.

One Item per video: the frames of all its planned clips (16 frames at strides 10, 20, 30 by
default, starts drawn from ctx.rng(video id, stride)), decoded once each in an isolated,
time-bounded worker (sources/video_decode.py). The clips ride along in
`annotations["clips"]` for the `video` builder.
"""
from __future__ import annotations

from typing import Any, Iterator

from pydantic import Field, model_validator

from sources.video_decode import IsolatedDecoder, VideoInfo
from sources.video_plan import ShortPolicy, clip_notes, frames_needed, plan_clips
from sources.listing import list_inputs
from sources.remote import check_regular, list_entry, local_copy
from uvd.api import BuildContext, Source, chunk
from uvd.config import Strict, require_path
from uvd.errors import BadInput, ConfigError
from uvd.records import Failed, Item

VIDEO_SUFFIXES = [".avi", ".m4v", ".mkv", ".mov", ".mp4", ".webm"]


class VideoOptions(Strict):
    operational_keys = frozenset({"timeout_s", "recycle_every", "decoder_threads"})  # not in the unit recipe
    root: str | None = None  # folder; with labels, each immediate sub-folder is a class (Kinetics)
    list_file: str | None = None  # one path per line (relative to the list file), optionally "path<TAB>label"
    labels: bool = True
    suffixes: list[str] = Field(default_factory=lambda: list(VIDEO_SUFFIXES))
    clip_len: int = Field(16, ge=1)
    strides: list[int] = Field(default_factory=lambda: [10, 20, 30], min_length=1)
    clips_per_stride: int = Field(1, ge=1)
    short_policy: ShortPolicy = "reduce_stride"
    max_overlap: float = Field(0.5, ge=0.0, le=1.0)  # near-duplicate reduced clips (sources/video_plan.py)
    backend: str = Field("auto", pattern="^(auto|decord|pyav)$")
    timeout_s: float = Field(120.0, gt=0)  # per decoder request (open, read) of one video
    recycle_every: int = Field(200, ge=1)  # fresh decoder process after this many videos
    decoder_threads: int = Field(1, ge=0)  # 0 = FFmpeg's choice; 1 suits one unit per core
    max_stage_mb: float = Field(4096.0, gt=0)  # a remote video is copied locally for the decoder: up to this size

    @model_validator(mode="after")
    def _check(self) -> "VideoOptions":
        if bool(self.root) == bool(self.list_file):
            raise ValueError("give exactly one of `root` or `list_file`")
        if any(s < 1 for s in self.strides):
            raise ValueError("strides must be ≥ 1")
        require_path(self.root or self.list_file or "", "video")
        return self


def list_videos(o: VideoOptions) -> list[tuple[str, str, str]]:
    """(item_id, path, label) sorted by item id; the id is the path relative to root / list file."""
    return list_inputs(o.root, o.list_file, o.suffixes, o.labels)


class VideoSource(Source):
    name = "video"
    Options = VideoOptions

    def __init__(self, options: VideoOptions, ctx: BuildContext) -> None:
        super().__init__(options, ctx)
        if options.clip_len > ctx.max_images:
            raise ConfigError(f"video: clip_len {options.clip_len} > max_images_per_sentence {ctx.max_images}")
        self._decoder: IsolatedDecoder | None = None

    @property
    def decoder(self) -> IsolatedDecoder:
        if self._decoder is None:
            o = self.options
            self._decoder = IsolatedDecoder(self.ctx.image, o.backend, o.timeout_s, o.recycle_every, o.decoder_threads)
        return self._decoder

    def plan(self, items_per_unit: int) -> list[dict[str, Any]]:
        return [{"videos": [list(e) for e in part]} for part in chunk(list_videos(self.options), items_per_unit)]

    def planned_items(self, payload: dict[str, Any]) -> int | None:
        return len(payload["videos"])

    def read(self, payload: dict[str, Any]) -> Iterator[Item | Failed]:
        for item_id, path, label in payload["videos"]:
            try:
                yield self.read_one(item_id, path, label)
            except BadInput as err:
                yield Failed(item_id, str(err))

    def read_one(self, item_id: str, path: str, label: str = "") -> Item:
        o = self.options
        plans: dict[int, Any] = {}

        def planner(info: VideoInfo) -> list[int]:
            clips = plan_clips(info.frames, o.clip_len, o.strides, o.clips_per_stride, o.short_policy,
                               lambda stride: self.ctx.rng(item_id, "clip", stride), o.max_overlap)
            plans["clips"] = clips
            return frames_needed(clips)

        path = list_entry(o.list_file, item_id, path)
        check_regular(path)  # the decoder opens it by path: a FIFO or device never reaches it
        with local_copy(path, int(o.max_stage_mb * (1 << 20))) as local:  # remote: a temporary copy
            info, frames = self.decoder.decode(local, planner)
        clips = plans["clips"]
        return Item(
            item_id=item_id, source=self.ctx.dataset, images=frames, label=label or None,
            annotations={"clips": [c.as_dict() for c in clips], "frame_indices": frames_needed(clips)},
            provenance={"path": item_id, "fps": round(info.fps, 6), "num_frames": info.frames,
                        "backend": info.backend, **({"width": info.width, "height": info.height} if info.width else {}),
                        **({"label": label} if label else {}), **clip_notes(clips)},
        )

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
