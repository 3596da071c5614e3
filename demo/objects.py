"""Demo inputs for 3D objects (`uvd demo`), and the duck contact sheet of docs/objects.md.

    python -m demo.objects docs/duck_views.png     # re-draw the contact sheet
"""
from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from demo.samples import samples_dir


def objects_inputs(workdir: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """The bundled Duck.glb and BoxTextured.glb in the Objaverse layout, plus a broken file and a
    point cloud (to show their audit reasons); one multiview window of 16 views per object."""
    root = workdir / "objaverse"
    glbs = root / "glbs" / "000-000"
    glbs.mkdir(parents=True, exist_ok=True)
    for name in ("Duck.glb", "BoxTextured.glb"):
        shutil.copy(samples_dir() / "objects" / name, glbs / name)
    (glbs / "broken.glb").write_bytes(b"glTF" + b"\x00not really a glb" * 8)
    import trimesh

    trimesh.PointCloud(np.random.default_rng(0).random((500, 3))).export(glbs / "scan_points.glb")
    return [{"name": "objects", "source": "objaverse", "source_args": {"root": str(root)},
             "builder": "multiview", "items_per_unit": 8}]


def duck_contact_sheet(path: str, views: int = 24, seed: int = 0) -> None:
    """All `views` renders of the duck (the paper's recipe) on one sheet, 6 per row, with captions."""
    import cv2
    import trimesh

    from renderers.mesh_normalise import prepare
    from renderers.mesh_render import orbit, render_views
    from sentence_builders.multiview import MultiviewBuilder, MultiviewOptions
    from uvd.api import BuildContext

    builder = MultiviewBuilder(MultiviewOptions(), BuildContext(dataset="objects", seed=seed))
    radius, elevation, start = builder.cameras("Duck.glb")
    cams = orbit(views, radius, elevation, start)
    images = render_views(prepare(trimesh.load_scene(samples_dir() / "objects" / "Duck.glb")), cams)
    tiles = []
    for cam, img in zip(cams, images):
        tile = cv2.copyMakeBorder(img, 0, 22, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, f"az {cam.azimuth_deg:.0f}", (8, 270), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(tile, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=(200, 200, 200)))
    rows = [np.concatenate(tiles[i:i + 6], axis=1) for i in range(0, len(tiles), 6)]
    sheet = np.concatenate(rows, axis=0)
    title = np.full((30, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(title, f"Duck.glb, seed {seed}: radius {radius:.2f}, elevation {elevation:.1f} deg, azimuth step 15 deg",
                (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(path, cv2.cvtColor(np.concatenate([title, sheet], axis=0), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    duck_contact_sheet(sys.argv[1] if len(sys.argv) > 1 else "docs/duck_views.png")
