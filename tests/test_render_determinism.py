"""Alpha-blended parts are drawn in an order fixed by the scene, so rebuilds are byte-identical.

pyrender keeps mesh nodes in a set: without a stable tie-break the order of transparent parts
came from object ids, which differ between processes (issue: 16 of 16 views of a transparent
glTF differed between two builds).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import random, sys, numpy as np, trimesh
random.seed(int(sys.argv[3]))
ballast = [object() for _ in range(random.randint(1, 5000))]  # moves object ids between runs
from renderers.mesh_normalise import prepare
from renderers.mesh_render import orbit, render_views
obj = prepare(trimesh.load_scene(sys.argv[1]))
np.save(sys.argv[2], np.stack(render_views(obj, orbit(4, 1.8, 20.0, step_deg=90.0), platform="osmesa")))
"""


def _transparent_parts(path: Path) -> None:
    """Six overlapping boxes, each its own alpha-blended material and colour."""
    scene = trimesh.Scene()
    colours = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 200, 0), (0, 200, 200), (200, 0, 200)]
    for k, rgb in enumerate(colours):
        box = trimesh.creation.box(extents=(0.6, 0.6, 0.6))
        box.apply_translation((0.08 * k - 0.2, 0.05 * (k % 3), -0.06 * k))
        mat = trimesh.visual.material.PBRMaterial(baseColorFactor=(*rgb, 110), alphaMode="BLEND",
                                                  doubleSided=True)
        box.visual = trimesh.visual.TextureVisuals(material=mat)
        scene.add_geometry(box, geom_name=f"part{k}")
    path.write_bytes(scene.export(file_type="glb"))


def test_transparent_mesh_renders_identically_in_fresh_processes(tmp_path: Path) -> None:
    glb = tmp_path / "glass.glb"
    _transparent_parts(glb)
    outs = []
    for i, seed in enumerate(("1", "2", "3")):
        env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
        env["PYTHONHASHSEED"] = seed
        out = tmp_path / f"r{i}.npy"
        subprocess.run([sys.executable, "-c", SCRIPT, str(glb), str(out), seed], check=True, cwd=ROOT, env=env,
                       timeout=180)
        outs.append(np.load(out))
    # the parts really are blended: some pixel mixes two colours (not a solid render that is trivially stable)
    img = outs[0][0].astype(int)
    assert ((img.min(axis=2) > 20) & (img.max(axis=2) < 235)).any()
    for other in outs[1:]:
        assert np.array_equal(outs[0], other)
