"""Clip planning: which frames each video sentence takes, before anything is decoded."""
from __future__ import annotations

import numpy as np
import pytest

from sources.video_plan import frames_needed, plan_clips, span
from uvd.errors import BadInput
from uvd.seeding import rng_for


def rng(video: str, seed: int = 0):
    return lambda stride: rng_for(seed, "videos", video, "clip", stride)


def test_clips_take_every_stride_th_frame_inside_the_video() -> None:
    clips = plan_clips(700, 16, [10, 20, 30], 2, "reduce_stride", rng("a.mp4"))
    assert [c.requested_stride for c in clips] == [10, 10, 20, 20, 30, 30]
    for c in clips:
        assert c.stride == c.requested_stride
        assert len(c.indices) == 16
        assert np.all(np.diff(c.indices) == c.stride)
        assert c.indices[0] == c.start and c.indices[-1] < 700
    assert frames_needed(clips) == sorted(set(i for c in clips for i in c.indices))


def test_starts_depend_on_seed_and_video_but_not_on_call_order() -> None:
    a = plan_clips(5000, 16, [10, 20, 30], 1, "reduce_stride", rng("a.mp4"))
    assert a == plan_clips(5000, 16, [10, 20, 30], 1, "reduce_stride", rng("a.mp4"))
    # the stride-30 clip is placed by its own generator: dropping stride 10 does not move it
    assert plan_clips(5000, 16, [30], 1, "reduce_stride", rng("a.mp4")) == [a[2]]
    assert [c.start for c in a] != [c.start for c in plan_clips(5000, 16, [10, 20, 30], 1, "reduce_stride", rng("b.mp4"))]
    assert [c.start for c in a] != [c.start for c in plan_clips(5000, 16, [10, 20, 30], 1, "reduce_stride", rng("a.mp4", 1))]


def test_short_video_reduces_the_stride_to_fit() -> None:
    # 310 frames (the bundled pancake clip): 16 frames at stride 30 need 451, at 20 need 301.
    # Allowing any overlap keeps the reduced clip: it fits the video at the largest stride that does.
    clips = plan_clips(310, 16, [10, 20, 30], 1, "reduce_stride", rng("pancake"), max_overlap=1.0)
    by_req = {c.requested_stride: c for c in clips}
    assert by_req[20].stride == 20 and by_req[10].stride == 10
    assert by_req[30].stride == (310 - 1) // 15 == 20
    assert by_req[30].indices[-1] < 310
    assert by_req[30].start != by_req[20].start  # never the very same clip twice
    # By default (50%) that reduced clip repeats the stride-20 clip's window (~97% of it): dropped, with a note.
    default = plan_clips(310, 16, [10, 20, 30], 1, "reduce_stride", rng("pancake"))
    assert [c.requested_stride for c in default] == [10, 20]
    assert len(default.notes) == 1 and "stride 30 (reduced to 20)" in default.notes[0] and "> max_overlap 50%" in default.notes[0]


def test_a_short_video_gives_no_near_duplicate_clips() -> None:
    # The case: 150 frames, 16 per clip at strides 10/20/30 all reduce to stride 9.
    clips = plan_clips(150, 16, [10, 20, 30], 1, "reduce_stride", rng("short"))
    assert len(clips) == 1 and clips[0].stride == 9 and clips[0].requested_stride == 10
    assert len(clips.notes) == 2 and all("reduced to 9" in n for n in clips.notes)
    everything = plan_clips(150, 16, [10, 20, 30], 1, "reduce_stride", rng("short"), max_overlap=1.0)
    assert len(everything) == 3 and not everything.notes
    # Clips at a stride that fits are never dropped, however much they overlap (asked for).
    many = plan_clips(40, 16, [1], 3, "reduce_stride", rng("fits"))
    assert len(many) == 3 and not many.notes
    # A long video is untouched: its clips at different strides are all kept.
    assert len(plan_clips(5000, 16, [10, 20, 30], 1, "reduce_stride", rng("a.mp4"))) == 3


def test_short_video_skip_policy() -> None:
    clips = plan_clips(310, 16, [10, 20, 30], 1, "skip", rng("pancake"))
    assert [c.requested_stride for c in clips] == [10, 20]
    with pytest.raises(BadInput, match=r"^too_short: 310 frames; a clip of 16 needs 451 at stride 30"):
        plan_clips(310, 16, [30], 1, "skip", rng("pancake"))


def test_too_few_frames_for_any_clip_and_empty_video() -> None:
    with pytest.raises(BadInput, match="^too_short"):
        plan_clips(10, 16, [1], 1, "reduce_stride", rng("tiny"))
    with pytest.raises(BadInput, match="^empty"):
        plan_clips(0, 16, [10], 1, "reduce_stride", rng("none"))
    assert span(16, 1) == 16 and span(16, 10) == 151
    exact = plan_clips(16, 16, [5], 3, "reduce_stride", rng("exact"))
    assert len(exact) == 1 and exact[0].indices == tuple(range(16))
