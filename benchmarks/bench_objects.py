"""Views/s of the full objects path vs a bare pyrender loop (the floor), side by side in one run.

full  = `uvd.unit.run_unit`: trimesh load, checks + unit-cube normalisation, pyrender of the
        seeded views, JPEG encode, Parquet write, audit, stats.
floor = the same meshes (already loaded and normalised, outside the timing) and the very same
        camera poses (read back from the full path's meta), rendered by a bare loop: one
        pyrender scene per object, one `render()` per view, same renderer, size and lights.
Rates are reported per wall-clock second and per CPU-second of this process (llvmpipe's
threads included): on a shared machine the CPU figure is the steadier one.

    python benchmarks/bench_objects.py [--copies 1] [--repeats 7] [--platform auto]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(folder: Path, copies: int) -> None:
    """The two bundled objects plus two generated ones, each under `copies` names (own cameras)."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    sphere.visual.vertex_colors = np.c_[np.random.default_rng(0).integers(0, 255, (len(sphere.vertices), 3)),
                                        np.full(len(sphere.vertices), 255)]
    ring = trimesh.creation.annulus(r_min=0.3, r_max=0.6, height=0.3)
    for c in range(copies):
        for name in ("Duck.glb", "BoxTextured.glb"):
            shutil.copy(ROOT / "sample_data" / "objects" / name, folder / f"{c}_{name}")
        sphere.export(folder / f"{c}_sphere.ply")
        ring.export(folder / f"{c}_ring.obj")


def full_path(folder: Path, out: Path, platform: str) -> tuple[tuple[float, float], int, list[dict]]:
    from uvd.config import BuildConfig, parse_model
    from uvd.cli.plugins import register_builtin
    from uvd.unit import make_source, run_unit

    register_builtin()
    cfg = parse_model(BuildConfig, {"out": str(out), "datasets": [
        {"name": "objects", "source": "objaverse", "source_args": {"root": str(folder)},
         "builder": "multiview", "builder_args": {"gl_platform": platform}, "items_per_unit": 10_000}]}, "bench")
    ds = cfg.datasets[0]
    payload = make_source(cfg, ds).plan(ds.items_per_unit)[0]
    t, c = time.perf_counter(), time.process_time()
    stats = run_unit(cfg, "objects", "00000", payload, str(out))
    seconds = (time.perf_counter() - t, time.process_time() - c)
    import pyarrow.parquet as pq

    metas = [json.loads(m) for m in pq.read_table(out / "sentences" / "objects" / "part-00000.parquet",
                                                   columns=["meta"]).column("meta").to_pylist()]
    return seconds, stats["images"], metas


def floor(objects: dict[str, object], metas: list[dict], platform: str) -> tuple[tuple[float, float], int]:
    from renderers.mesh_render import LIGHTS, AMBIENT, _light_offset, _pyrender, offscreen

    pr = _pyrender(platform)  # type: ignore[arg-type]
    r = offscreen(256, 256, platform)  # type: ignore[arg-type]
    offsets = [_light_offset(up, left) for _, up, left in LIGHTS]
    views = 0
    t, c = time.perf_counter(), time.process_time()
    for m in metas:
        obj = objects[m["item_id"]]
        scene = pr.Scene(bg_color=[1.0, 1.0, 1.0, 1.0], ambient_light=[AMBIENT] * 3)
        for name, geom in obj.geometry.items():  # type: ignore[attr-defined]
            scene.add(pr.Mesh.from_trimesh(geom, smooth=geom.visual.kind != "face", poses=obj.poses[name]))  # type: ignore[attr-defined]
        cam = scene.add(pr.PerspectiveCamera(yfov=np.radians(49.1), znear=0.05, zfar=10.0))
        lights = [scene.add(pr.DirectionalLight(intensity=i)) for i, _, _ in LIGHTS]
        for pose in m["poses"]:
            pose = np.array(pose)
            scene.set_pose(cam, pose)
            for node, off in zip(lights, offsets):
                scene.set_pose(node, pose @ off)
            r.render(scene, flags=pr.RenderFlags.SKIP_CULL_FACES)
            views += 1
    return (time.perf_counter() - t, time.process_time() - c), views


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=1, help="copies of each of the 4 meshes (default 1: 4 objects)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--platform", default="auto", choices=["auto", "egl", "osmesa"])
    args = p.parse_args()

    from renderers.mesh_normalise import prepare

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        make_inputs(folder, args.copies)
        objects = {f.name: prepare(trimesh.load_scene(f)) for f in sorted(folder.iterdir())}
        _, _, metas = full_path(folder, Path(tmp) / "warm", args.platform)  # compiles shaders, warms caches
        floor(objects, metas, args.platform)
        rates: dict[str, list[float]] = {k: [] for k in ("full", "floor", "full_cpu", "floor_cpu")}
        for i in range(args.repeats):  # interleaved so that the machine's load hits both alike
            (wall, cpu), n, metas = full_path(folder, Path(tmp) / f"run{i}", args.platform)
            rates["full"].append(n / wall)
            rates["full_cpu"].append(n / cpu)
            (wall, cpu), n = floor(objects, metas, args.platform)
            rates["floor"].append(n / wall)
            rates["floor_cpu"].append(n / cpu)
    med = {k: statistics.median(v) for k, v in rates.items()}
    paired = statistics.median(a / b for a, b in zip(rates["full"], rates["floor"]))
    paired_cpu = statistics.median(a / b for a, b in zip(rates["full_cpu"], rates["floor_cpu"]))
    print(f"objects: {len(objects)}, views per run: {n}, platform: {os.environ.get('PYOPENGL_PLATFORM')}, "
          f"repeats: {args.repeats}")
    for k in ("floor", "full"):
        runs = ", ".join(f"{x:.1f}" for x in rates[k])
        print(f"{k:>5}: {med[k]:7.1f} views/s wall ({runs}); {med[k + '_cpu']:7.1f} views per CPU-second")
    print(f"ratio full/floor (median of paired runs): wall {paired:.2f}, CPU {paired_cpu:.2f}")


if __name__ == "__main__":
    main()
