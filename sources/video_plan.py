"""Which frames a video's sentences take: clips of `clip_len` frames at each stride.

Shared by the `video`, `annotated_video` and `pose_video` sources. Planning needs only the frame
count, so a source plans before it decodes and decodes only the frames it will use.

No near-duplicate clips: a short video reduces a stride to fit (`reduce_stride`), so several
configured strides can end at the same actual stride, and their clips would show the same
moment at the same pace (150 frames, 16 per clip, strides 10/20/30: three stride-9 clips
covering almost the whole video). A clip whose time window overlaps a clip already kept at the
same actual stride by more than `max_overlap` of its span is dropped; the plan's `notes` say
which and why, and sources put them in the item's provenance (→ sentence meta).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import numpy as np

from uvd.errors import BadInput, ConfigError

ShortPolicy = Literal["reduce_stride", "skip"]


@dataclass(frozen=True)
class Clip:
    stride: int  # the stride the frames were taken at
    requested_stride: int  # the configured stride (differs when a short video reduced it)
    start: int
    indices: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "indices": list(self.indices)}


def span(clip_len: int, stride: int) -> int:
    """Frames a clip covers from its first to its last frame."""
    return (clip_len - 1) * stride + 1


class ClipPlan(list):  # type: ignore[type-arg]
    """The clips of a video (a list of Clip) and `notes`: why some planned clips were dropped."""

    def __init__(self, clips: list[Clip], notes: list[str]) -> None:
        super().__init__(clips)
        self.notes = notes


def overlap(a: Clip, b: Clip) -> float:
    """Fraction of a's time window (first to last frame) that b's window covers."""
    a_end, b_end = a.indices[-1], b.indices[-1]
    shared = min(a_end, b_end) - max(a.start, b.start) + 1
    return max(0, shared) / (a_end - a.start + 1)


def clip_notes(clips: list[Clip]) -> dict[str, Any]:
    """Provenance entry of a plan that dropped near-duplicate clips (empty otherwise)."""
    notes = getattr(clips, "notes", None)
    return {"clips_dropped": list(notes)} if notes else {}


def plan_clips(num_frames: int, clip_len: int, strides: list[int], clips_per_stride: int,
               short_policy: ShortPolicy, rng: Callable[[int], np.random.Generator],
               max_overlap: float = 0.5) -> ClipPlan:
    """Clips for one video; `rng(stride)` gives the generator that places that stride's clips.

    The generator is keyed by the configured stride, not the reduced one, so a reduced clip
    never repeats the start of another stride's clip by construction of the seed. Raises
    BadInput("too_short", …) when no stride yields a clip.
    """
    if num_frames <= 0:
        raise BadInput("empty", "the video has no frames")
    clips: list[Clip] = []
    notes: list[str] = []
    skipped: list[int] = []
    taken: set[tuple[int, int]] = set()
    for requested in strides:
        stride = requested
        if span(clip_len, stride) > num_frames:
            if short_policy == "skip" or clip_len > num_frames:
                skipped.append(requested)
                continue
            # What LVM's scripts did: the largest stride whose clip still fits the video.
            stride = max(1, (num_frames - 1) // (clip_len - 1)) if clip_len > 1 else 1
        # Starts another (reduced) stride already took at this stride would repeat its clip exactly.
        free = [s for s in range(num_frames - span(clip_len, stride) + 1) if (stride, s) not in taken]
        if not free:
            skipped.append(requested)
            continue
        picks = rng(requested).choice(len(free), size=min(clips_per_stride, len(free)), replace=False)
        for s in sorted(free[p] for p in picks.tolist()):
            taken.add((stride, s))
            clip = Clip(stride, requested, s, tuple(range(s, s + span(clip_len, stride), stride)))
            # Only stride reduction makes duplicates: clips_per_stride > 1 at a stride that fits is asked for.
            twin = next((c for c in clips if c.stride == stride and (stride != requested or c.stride != c.requested_stride)
                         and overlap(clip, c) > max_overlap), None)
            if twin is not None:
                notes.append(f"stride {requested} (reduced to {stride}) clip at frame {s} dropped: it overlaps the "
                             f"stride-{twin.stride} clip at frame {twin.start} by {overlap(clip, twin):.0%} "
                             f"> max_overlap {max_overlap:.0%}")
                continue
            clips.append(clip)
    if not clips:
        need = ", ".join(f"{span(clip_len, s)} at stride {s}" for s in skipped)
        raise BadInput("too_short", f"{num_frames} frames; a clip of {clip_len} needs {need} (short_policy={short_policy})")
    return ClipPlan(clips, notes)


def check_sentence_length(source: str, frames_per_sentence: int, max_images: int) -> None:
    """Annotated video: a frame and its annotation per frame must fit one sentence."""
    if 2 * frames_per_sentence > max_images:
        raise ConfigError(f"{source}: 2 × frames_per_sentence ({frames_per_sentence}) "
                          f"> max_images_per_sentence {max_images}")


def frames_needed(clips: list[Clip]) -> list[int]:
    """Every frame any clip uses, once, in decoding order."""
    return sorted({i for c in clips for i in c.indices})
