"""Golden test against LVM's video sampling (ytongbai/LVM, evaluation/vqlm_demo/utils.py,
read_frames_from_video, called by tokenize_examples/tokenize_video_muse.py once per stride):

    if total_frames < n_frames: return None                      # the video is skipped
    max_stride = (total_frames - 1) // (n_frames - 1)
    stride = min(max_stride, stride)
    start = np.random.randint(0, total_frames - (n_frames - 1) * stride)
    frame_indices = np.arange(n_frames) * stride + start

configs/uvdv1.yaml expresses it as `short_policy: reduce_stride, clips_per_stride: 1,
max_overlap: 1.0`. One departure remains, on purpose: two strides reduced to the same stride never
take the same start (the same clip twice would be the same sentence id); LVM's independent draws
may write it twice.
"""
from __future__ import annotations

import numpy as np
import pytest

from sources.video_plan import plan_clips
from uvd.errors import BadInput

N, STRIDES = 16, [10, 20, 30]


def lvm_clip(total: int, stride: int, rng: np.random.Generator) -> tuple[int, np.ndarray] | None:
    if total < N:
        return None
    stride = min((total - 1) // (N - 1), stride)
    start = int(rng.integers(0, total - (N - 1) * stride))
    return stride, np.arange(N) * stride + start


def uvd_clips(total: int, seed: int, max_overlap: float = 1.0):  # type: ignore[no-untyped-def]
    return plan_clips(total, N, STRIDES, 1, "reduce_stride",
                      lambda s: np.random.default_rng([seed, s]), max_overlap)


@pytest.mark.parametrize("total", [16, 40, 151, 166, 300, 316, 451, 1000])
def test_one_clip_per_stride_at_lvms_stride_and_start_range(total: int) -> None:
    lvm = {s: lvm_clip(total, s, np.random.default_rng(0)) for s in STRIDES}
    starts: dict[int, set[int]] = {s: set() for s in STRIDES}
    for seed in range(60):
        clips = uvd_clips(total, seed)
        by_requested = {c.requested_stride: c for c in clips}
        for s in STRIDES:
            lvm_stride = lvm[s][0]  # type: ignore[index]
            free_starts = total - (N - 1) * lvm_stride  # LVM's randint(0, this)
            if s not in by_requested:  # only when every start of that reduced stride is taken already
                assert free_starts <= sum(c.stride == lvm_stride for c in clips)
                continue
            c = by_requested[s]
            assert c.stride == lvm_stride and 0 <= c.start < free_starts
            assert list(c.indices) == (np.arange(N) * lvm_stride + c.start).tolist()
            starts[s].add(c.start)
        if all(lvm[s][0] == s for s in STRIDES):  # no stride reduced: one clip per stride, as LVM
            assert len(clips) == 3
    for s in STRIDES:  # starts spread over LVM's whole range (uniform draws)
        lvm_stride = lvm[s][0]  # type: ignore[index]
        span_of_starts = total - (N - 1) * lvm_stride
        if s == STRIDES[0] or lvm_stride == s:  # never blocked by another stride's clip
            assert len(starts[s]) >= min(span_of_starts, 20) * 0.6


def test_videos_under_16_frames_are_skipped_as_lvm_does() -> None:
    assert lvm_clip(15, 10, np.random.default_rng(0)) is None
    with pytest.raises(BadInput, match="too_short"):
        uvd_clips(15, 0)


def test_max_overlap_of_uvdv1_plus_drops_reduced_near_duplicates() -> None:
    # 16–165 frames: all three strides reduce to one; LVM (max_overlap 1.0) writes 3 clips, 0.5 keeps 1
    assert len(uvd_clips(150, 0)) == 3 and len(uvd_clips(150, 0, max_overlap=0.5)) == 1
    assert len(uvd_clips(1000, 0, max_overlap=0.5)) == 3  # long videos: nothing reduced, nothing dropped
