"""Video source speed: frames/s and sentences/s of `video` (source + builder) against

  naive   OpenCV VideoCapture reading sequentially from the start up to each clip's frames
          (one pass per clip, as a straightforward script would do it), and
  decord  decord's own get_batch on the same indices, in-process (no isolation, no fallback),

all on the same generated videos and the same planned frame indices, normalised to 256×256
alike, in one run. Usage:

    python benchmarks/bench_video.py [--videos 24] [--generated 0] [--frames 500] [--size 640x360] [--repeat 1]

The inputs are copies of the real bundled clip (sample_data/video/flipping_a_pancake.mkv,
H.264 426×240, 310 frames: real content costs real decoding), plus optionally generated
H.264 mp4s of --frames frames at --size.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import decord

from sentence_builders.video import VideoClipBuilder
from sources.video import VideoOptions, VideoSource
from demo.video import write_video
from uvd.api import BuildContext
from uvd.image import normalise
from uvd.records import Failed

PANCAKE = Path(__file__).resolve().parent.parent / "sample_data" / "video" / "flipping_a_pancake.mkv"


def ours(root: Path, ctx: BuildContext, warm: bool = False) -> tuple[float, int, int, list[tuple[str, list[list[int]]]]]:
    """warm=False counts the decoder process start (~1 s of imports, once per unit); warm=True does not."""
    t = time.perf_counter()
    src = VideoSource(VideoOptions(root=str(root)), ctx)
    if warm:
        src.decoder.warm_up()
        t = time.perf_counter()
    builder = VideoClipBuilder(None, ctx)
    frames = sentences = 0
    plans = []
    for payload in src.plan(1000):
        for item in src.read(payload):
            assert not isinstance(item, Failed), item
            clips = [c["indices"] for c in item.annotations["clips"]]
            plans.append((str(root / item.item_id), clips))
            for s in builder.process(item):
                frames += len(s.images)
                sentences += 1
    src.close()
    return time.perf_counter() - t, frames, sentences, plans


def naive(plans: list[tuple[str, list[list[int]]]]) -> tuple[float, int, int]:
    t = time.perf_counter()
    frames = sentences = 0
    for path, clips in plans:
        for indices in clips:
            # one decoding thread, like the source's worker and the decord baseline
            cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
            wanted, out, i = set(indices), [], 0
            while i <= indices[-1]:
                ok, bgr = cap.read()
                if not ok:
                    break
                if i in wanted:
                    out.append(normalise(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                i += 1
            cap.release()
            assert len(out) == len(indices)
            frames += len(out)
            sentences += 1
    return time.perf_counter() - t, frames, sentences


def decord_raw(plans: list[tuple[str, list[list[int]]]]) -> tuple[float, int, int]:
    t = time.perf_counter()
    frames = sentences = 0
    for path, clips in plans:
        vr = decord.VideoReader(path, num_threads=1)
        for indices in clips:
            out = [normalise(f) for f in vr.get_batch(indices).asnumpy()]
            frames += len(out)
            sentences += 1
    return time.perf_counter() - t, frames, sentences


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=24, help="copies of the real pancake clip")
    p.add_argument("--generated", type=int, default=0, help="generated videos besides")
    p.add_argument("--frames", type=int, default=500)
    p.add_argument("--size", default="640x360")
    p.add_argument("--repeat", type=int, default=1, help="best of N runs per method")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(args.videos):
            shutil.copy(PANCAKE, root / f"real{i:03d}.mkv")
        for i in range(args.generated):
            write_video(root / f"gen{i:03d}.mp4", args.frames, width=w, height=h)
        ctx = BuildContext(dataset="bench", seed=0)
        results: dict[str, tuple[float, int, int]] = {}
        for _ in range(args.repeat):
            dt, f, s, plans = ours(root, ctx)
            runs = {"video source": (dt, f, s), "video source warm": ours(root, ctx, warm=True)[:3],
                    "naive opencv": naive(plans), "decord get_batch": decord_raw(plans)}
            for k, v in runs.items():
                if k not in results or v[0] < results[k][0]:
                    results[k] = v
    print(f"{args.videos} real clips (426x240, 310 frames) + {args.generated} generated ({w}x{h}, {args.frames} frames), "
          f"clips of 16 at strides 10/20/30")
    print(f"{'method':<20} {'seconds':>8} {'frames/s':>9} {'sentences/s':>12}")
    for k, (dt, f, s) in results.items():
        print(f"{k:<20} {dt:8.2f} {f / dt:9.1f} {s / dt:12.2f}")
    for name in ("video source", "video source warm"):
        base = results[name][0]
        print(f"{name} vs naive opencv: {results['naive opencv'][0] / base:.2f}x, "
              f"vs decord get_batch: {results['decord get_batch'][0] / base:.2f}x")


if __name__ == "__main__":
    main()
