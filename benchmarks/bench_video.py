"""The video path as a user runs it: `uvd build` (CLI, Ray, all cores) on folders of real clips,
against two per-clip baselines run on all cores too, with the same machine-wide accounting.

    python benchmarks/bench_video.py                          # 120 real clips + 4 × a 2-min 1080p clip
    python benchmarks/bench_video.py --copies 240 --long-minutes 3 --repeat 2

Sets:
  short  `--copies` copies of the real bundled clip (sample_data/video/flipping_a_pancake.mkv,
         H.264 426×240, 310 frames at 30 fps, keyframes every 150 frames).
  long   `--long-copies` links (other names: other clip starts) to one 1080p H.264 of
         `--long-minutes` minutes made from the same real clip (looped, upscaled to
         1920×1080, x264 veryfast CRF 23, keyframe every 250 frames) with ffmpeg (Debian's,
         apt-get installed when missing); made once and cached in .bench-cache/.

Methods (each in a fresh process; frames normalised to 256×256 and encoded JPEG q95 alike):
  uvd     `uvd build CONFIG`: source `video` + builder `video` (16-frame clips at strides
          10, 20, 30; one decode of the union of a video's clip frames in an isolated
          decoder), Parquet shards.
  naive   OpenCV VideoCapture (one decoding thread) reading from frame 0 up to each clip's
          last frame, one pass per clip, as a straightforward script does.
  decord  decord VideoReader(num_threads=1).get_batch(clip indices), one call per clip.
The baselines decode exactly the frames uvd's shards hold (read from their meta) and run in a
process pool of one process per core. Wall time from process start to exit; CPU is machine-wide
busy CPU-seconds from /proc/stat (Ray's daemons count), and as a cross-check on a shared
machine each method's own process tree (benchmarks/cpu_meter.py TreeCPU). Ratios: uvd over
each baseline in frames per busy CPU-second and in wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_meter import load_average, run_measured  # noqa: E402
from photo_corpus import CACHE, ROOT  # noqa: E402

PANCAKE = ROOT / "sample_data" / "video" / "flipping_a_pancake.mkv"

BASELINE = r"""
import json, sys, time
from multiprocessing import get_context
a = json.loads(sys.argv[1])

def naive(job):
    import cv2
    from uvd.codec import encode
    from uvd.image import normalise
    cv2.setNumThreads(1)
    path, clips = job
    frames = 0
    for indices in clips:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        wanted, i = set(indices), 0
        while i <= indices[-1]:
            ok, bgr = cap.read()
            if not ok:
                break
            if i in wanted:
                encode(normalise(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                frames += 1
            i += 1
        cap.release()
    return frames

def decord_clip(job):
    import cv2, decord
    from uvd.codec import encode
    from uvd.image import normalise
    cv2.setNumThreads(1)
    path, clips = job
    vr = decord.VideoReader(path, num_threads=1)
    frames = 0
    for indices in clips:
        for f in vr.get_batch(indices).asnumpy():
            encode(normalise(f))
            frames += 1
    return frames

fn = {"naive": naive, "decord": decord_clip}[a["method"]]
with get_context("fork").Pool(a["processes"]) as pool:
    print("RESULT " + json.dumps({"frames": sum(pool.imap_unordered(fn, a["jobs"]))}))
"""


def long_clip(minutes: float) -> Path:
    """A 1080p H.264 of `minutes` minutes from the real clip, made once with ffmpeg."""
    out = CACHE / f"pancake-1080p-{minutes:g}min.mp4"
    if out.exists():
        return out
    if not shutil.which("ffmpeg"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "ffmpeg"], check=True, env=env, stdout=subprocess.DEVNULL)
    out.parent.mkdir(parents=True, exist_ok=True)
    loops = max(1, round(minutes * 60 / (310 / 30)))
    tmp = out.with_suffix(".part.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(PANCAKE), "-an",
                    "-vf", "scale=1920:1080:flags=bicubic", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                    "-g", "250", "-pix_fmt", "yuv420p", str(tmp)], check=True)
    tmp.rename(out)
    return out


def run_uvd(folder: Path, out: Path, backend: str = "auto") -> dict:
    cfg = out.parent / f"{out.name}.json"
    videos = sum(1 for _ in folder.iterdir())
    per_unit = -(-videos // (os.cpu_count() or 1))  # one unit per core: all cores busy, one decoder start each
    cfg.write_text(json.dumps({"out": str(out), "datasets": [
        {"name": "video", "source": "video", "builder": "video", "items_per_unit": per_unit,
         "source_args": {"root": str(folder), "labels": False, "backend": backend}}]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc, span = run_measured([sys.executable, "-m", "uvd", "build", str(cfg)], cwd=ROOT, env=env)
    if proc.returncode:
        raise RuntimeError(f"uvd build failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    import pyarrow.parquet as pq

    clips: dict[str, list[list[int]]] = defaultdict(list)
    frames = 0
    for shard in sorted((out / "sentences" / "video").glob("*.parquet")):
        for meta, n in zip(*pq.read_table(shard, columns=["meta", "num_images"]).to_pydict().values()):
            meta = json.loads(meta)
            clips[str(folder / meta["item_id"])].append(meta["frame_indices"])
            frames += n
    return {"name": "uvd build (Ray, all cores)", "frames": frames, "span": span, "jobs": sorted(clips.items())}


def run_baseline(method: str, jobs: list, processes: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc, span = run_measured([sys.executable, "-c", BASELINE, json.dumps(
        {"method": method, "jobs": jobs, "processes": processes})], cwd=ROOT, env=env)
    result = next((json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or result is None:
        raise RuntimeError(f"{method} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    names = {"naive": "naive OpenCV, from frame 0 per clip", "decord": "decord get_batch per clip"}
    return {"name": f"{names[method]} ({processes} processes)", "frames": result["frames"], "span": span}


def measure(label: str, folder: Path, work: Path, repeat: int, processes: int, backend: str) -> None:
    runs: dict[str, list[dict]] = defaultdict(list)
    for r in range(repeat):  # alternated: the machine's load drifts
        u = run_uvd(folder, work / f"{label}-uvd{r}", backend)
        runs["uvd"].append(u)
        for method in ("naive", "decord"):
            runs[method].append(run_baseline(method, u["jobs"], processes))
        print(f"{label} run {r + 1}: " + ", ".join(f"{k} {v[-1]['span'].wall_s:.1f} s" for k, v in runs.items()),
              flush=True)
    best = {k: min(v, key=lambda x: x["span"].wall_s) for k, v in runs.items()}
    print(f"\n{label}: best of {repeat}; load average now {load_average():.1f}")
    print("| run | frames | wall s | machine busy CPU-s | frames/s | frames / busy CPU-s | tree CPU-s "
          "| frames / tree CPU-s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in best.values():
        s = r["span"]
        print(f"| {r['name']} | {r['frames']} | {s.wall_s:.1f} | {s.busy_cpu_s:.1f} | {r['frames'] / s.wall_s:.0f} | "
              f"{s.per_busy(r['frames']):.0f} | {s.tree_cpu_s:.1f} | {r['frames'] / s.tree_cpu_s:.0f} |")
    u = best["uvd"]
    if u["span"].by_kind:
        print("uvd tree CPU-s by process: " + ", ".join(f"{k} {v:.1f}" for k, v in u["span"].by_kind.items()))
    for k in ("naive", "decord"):
        b = best[k]
        print(f"ratio uvd / {k}: frames per busy CPU-s "
              f"{u['span'].per_busy(u['frames']) / b['span'].per_busy(b['frames']):.2f}×, "
              f"wall {b['span'].wall_s / u['span'].wall_s:.2f}× "
              f"(per process-tree CPU-s {(u['frames'] / u['span'].tree_cpu_s) / (b['frames'] / b['span'].tree_cpu_s):.2f}×)")
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=120, help="copies of the real clip in the short set (0 = skip)")
    p.add_argument("--long-minutes", type=float, default=2.0, help="length of the 1080p clip (0 = skip)")
    p.add_argument("--long-copies", type=int, default=4, help="links to the 1080p clip in the long set")
    p.add_argument("--repeat", type=int, default=1, help="runs of each method, alternated; the best wall counts")
    p.add_argument("--processes", type=int, default=os.cpu_count(), help="processes of each baseline")
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "pyav"], help="the video source's backend")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp:
        work = Path(tmp)
        if args.copies:
            short = work / "short"
            short.mkdir()
            for i in range(args.copies):
                shutil.copy(PANCAKE, short / f"real{i:03d}.mkv")
            measure(f"short: {args.copies} × real clip 426×240, 310 frames", short, work, args.repeat,
                    args.processes, args.backend)
        if args.long_minutes:
            t = time.perf_counter()
            clip = long_clip(args.long_minutes)
            print(f"long clip {clip.name}: {clip.stat().st_size / 1e6:.0f} MB (ready in {time.perf_counter() - t:.0f} s)")
            long_dir = work / "long"
            long_dir.mkdir()
            for i in range(args.long_copies):  # other names, other clip starts: one decode each
                os.symlink(clip, long_dir / f"long{i:02d}.mp4")
            measure(f"long: {args.long_copies} × 1080p H.264, {args.long_minutes:g} min", long_dir, work, args.repeat,
                    args.processes, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
