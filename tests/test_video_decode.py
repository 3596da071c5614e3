"""The isolated decoder: deadlines, a killed or dead worker replaced, fallback, flat memory."""
from __future__ import annotations

from pathlib import Path

import pytest

from sources.video_decode import IsolatedDecoder
from demo.video import write_video
from tests.support.video_files import read_index
from uvd.config import ImageSpec
from uvd.errors import BadInput

PANCAKE = str(Path(__file__).resolve().parent.parent / "sample_data" / "video" / "flipping_a_pancake.mkv")


@pytest.fixture()
def decoder():
    dec = IsolatedDecoder(ImageSpec(), backend="decord", timeout_s=60)
    yield dec
    dec.close()


def test_a_request_past_its_deadline_kills_the_worker_and_the_next_video_goes_on(decoder: IsolatedDecoder) -> None:
    decoder.timeout_s = 0.001  # no decoder opens and decodes 30 frames in a millisecond
    with pytest.raises(BadInput, match=r"^timeout: decord: decoding took longer than 0.001s"):
        decoder.decode(PANCAKE, lambda info: list(range(0, 300, 10)))
    assert decoder.restarts == 1 and decoder._proc is None
    decoder.timeout_s = 60
    info, frames = decoder.decode(PANCAKE, lambda info: list(range(0, 300, 10)))
    assert info.frames == 310 and len(frames) == 30 and frames[0].shape == (256, 256, 3)


def test_a_dead_worker_is_reported_and_replaced(decoder: IsolatedDecoder) -> None:
    decoder.decode(PANCAKE, lambda info: [0])
    decoder._proc.kill()  # as if a decoder segfaulted between two videos
    decoder._proc.wait()
    with pytest.raises(BadInput, match=r"^crash: decord: decoder process died \(exit code -9\)"):
        decoder.decode(PANCAKE, lambda info: [0])
    info, frames = decoder.decode(PANCAKE, lambda info: [0, 309])
    assert len(frames) == 2 and decoder.restarts == 1


def test_auto_backend_falls_back_to_pyav_after_a_crash() -> None:
    dec = IsolatedDecoder(ImageSpec(), backend="auto", timeout_s=60)
    try:
        dec.decode(PANCAKE, lambda info: [0])
        dec._proc.kill()
        dec._proc.wait()
        info, frames = dec.decode(PANCAKE, lambda info: [3])
        assert info.backend == "pyav" and len(frames) == 1
    finally:
        dec.close()


def test_worker_is_recycled_and_its_memory_stays_flat(tmp_path: Path) -> None:
    path = str(write_video(tmp_path / "v.mp4", 120))
    dec = IsolatedDecoder(ImageSpec(), backend="decord", recycle_every=5)
    try:
        pids, rss = set(), []
        for _ in range(12):
            _, frames = dec.decode(path, lambda info: list(range(0, 120, 8)))
            assert [read_index(f) for f in frames] == list(range(0, 120, 8))
            pids.add(dec._proc.pid)
            rss.append(_rss_kib(dec._proc.pid))
        assert len(pids) == 3  # videos 1-5, 6-10, 11-12
        assert max(rss[1:5]) < rss[1] * 1.25  # no growth within one worker's life
    finally:
        dec.close()


def test_too_many_pixels_are_refused_before_decoding(tmp_path: Path) -> None:
    path = str(write_video(tmp_path / "big.mp4", 3))
    dec = IsolatedDecoder(ImageSpec(max_pixels=320 * 240 - 1), timeout_s=60)
    try:
        with pytest.raises(BadInput, match=r"^too_large: 320x240"):
            dec.decode(path, lambda info: [0])
    finally:
        dec.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("name,codec", [("v.mp4", "h264"), ("v.mkv", "h264"), ("v.webm", "libvpx-vp9")])
def test_pyav_seeks_to_the_right_frames(tmp_path: Path, name: str, codec: str) -> None:
    from sources.video_decode import _PyAVReader

    path = str(write_video(tmp_path / name, 400, codec=codec))
    reader = _PyAVReader(path, 1)
    assert reader.frames == 400 and reader.pts is not None
    wanted = list(range(90, 400, 21)) + [399]
    seeking = reader._read_seeking(wanted, ImageSpec())
    assert seeking is not None and [read_index(f) for f in seeking] == wanted
    assert [read_index(f) for f in reader.read([3, 70, 250], ImageSpec())] == [3, 70, 250]


def test_pyav_seeks_once_per_run_of_wanted_frames_and_returns_them_in_request_order(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    from sources.video_decode import _PyAVReader

    path = str(write_video(tmp_path / "v.mp4", 400))
    reader = _PyAVReader(path, 1)
    assert reader.keyframes == [0, 250]  # the encoder's default interval
    reader.keyframes = [0, 100, 200, 300]  # as if it had put more
    wanted = [330, 5, 10, 15, 150, 160, 170, 380, 10, 230]  # unsorted, one frame twice
    # 15 → 150 and 230 → 330: far apart with a keyframe between, split; 170 → 230: close, kept
    assert reader._runs(wanted) == [[5, 10, 15], [150, 160, 170, 230], [330, 380]]
    reader.keyframes = [0, 250]  # 15 → 150: no keyframe between, a seek would go back to 0
    assert reader._runs(wanted) == [[5, 10, 15, 150, 160, 170, 230], [330, 380]]
    reader.keyframes = [0, 100, 200, 300]
    seeks: list[int] = []
    import av

    real_open = av.open

    class Counting:  # the container, with its seeks counted (its attributes are read-only)
        def __init__(self, c) -> None:
            self.c = c

        def __getattr__(self, name):
            return getattr(self.c, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.c.__exit__(*exc)

        def seek(self, *a, **k):
            seeks.append(a[0])
            return self.c.seek(*a, **k)

    monkeypatch.setattr(av, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    frames = reader.read(wanted, ImageSpec())
    assert [read_index(f) for f in frames] == wanted
    assert len(seeks) == 3


def test_a_stream_that_ends_early_is_planned_again_on_what_it_holds(tmp_path: Path) -> None:
    from tests.support.video_files import write_overreporting_mp4

    path = str(write_overreporting_mp4(tmp_path / "over.mp4", 100, 40))  # header: 140 samples
    dec = IsolatedDecoder(ImageSpec(), backend="pyav", timeout_s=60)
    try:
        seen: list[int] = []

        def planner(info):  # the first plan asks past the end, as a plan on a lying header would
            seen.append(info.frames)
            return [info.frames + 30] if len(seen) == 1 else list(range(info.frames - 16, info.frames))

        info, frames = dec.decode(path, planner)
        assert seen == [100, 100] and info.frames == 100  # PyAV counted the packets; decoding confirmed
        assert [read_index(f) for f in frames] == list(range(84, 100))
    finally:
        dec.close()
