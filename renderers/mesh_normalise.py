"""Flatten a trimesh object into instanced triangle meshes, refuse what cannot be rendered, and fit
it into the unit cube at the origin (longest side 1, bounding-box centre at 0).

Pure geometry: nothing here reads files or touches OpenGL.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from uvd.errors import BadInput

# Below this many float32 ulps of the object's offset from the origin, its shape is noise.
_FLOAT32_EPS = float(np.finfo(np.float32).eps)


@dataclass
class PreparedObject:
    """A renderable object: each geometry with the poses of its instances in unit-cube space."""

    geometry: dict[str, trimesh.Trimesh]
    poses: dict[str, np.ndarray]  # geometry name → (n, 4, 4) float64, file space → unit cube
    center: np.ndarray  # bounding-box centre in the file's (scene-graph flattened) coordinates
    scale: float  # unit-cube size / longest bounding-box side
    faces: int  # triangles drawn, instances counted
    dropped: dict[str, int] = field(default_factory=dict)  # non-triangle geometry left out, by type

    def meta(self) -> dict[str, Any]:
        return {
            "center": [round(float(c), 6) for c in self.center],
            "scale": float(f"{self.scale:.9g}"),
            "faces": self.faces,
            "instances": int(sum(len(p) for p in self.poses.values())),
            **({"dropped": dict(self.dropped)} if self.dropped else {}),
        }


def _instances(obj: Any) -> tuple[list[tuple[str, np.ndarray]], dict[str, Any]]:
    """(geometry name, world transform) for every geometry node, scene graph flattened."""
    if isinstance(obj, trimesh.Scene):
        out = []
        for node in obj.graph.nodes_geometry:
            transform, name = obj.graph[node]
            out.append((name, np.asarray(transform, dtype=np.float64)))
        return out, dict(obj.geometry)
    if isinstance(obj, trimesh.parent.Geometry):
        return [("geometry", np.eye(4))], {"geometry": obj}
    raise BadInput("decode", f"not a trimesh object ({type(obj).__name__})")


def prepare(obj: Any, max_faces: int = 2_000_000, min_extent: float = 1e-12) -> PreparedObject:
    """Check a loaded mesh/scene and compute its unit-cube normalisation.

    Raises BadInput: `empty` (no triangles), `point_cloud` (points only), `too_large` (more
    than `max_faces` triangles drawn), `degenerate` (non-finite coordinates, zero area, or an
    extent too small to survive float32 at its offset).
    """
    instances, geometry = _instances(obj)
    kept: dict[str, list[np.ndarray]] = {}
    dropped: Counter[str] = Counter()
    faces = 0
    for name, transform in instances:
        geom = geometry.get(name)
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces) > 0:
            kept.setdefault(name, []).append(transform)
            faces += len(geom.faces)
        else:
            dropped[type(geom).__name__] += 1
    if not kept:
        if dropped.get("PointCloud"):
            points = sum(len(g.vertices) for g in geometry.values() if isinstance(g, trimesh.PointCloud))
            raise BadInput("point_cloud", f"{points} points and no triangles: no surface to render")
        what = ", ".join(f"{n} {k}" for k, n in sorted(dropped.items())) or "nothing"
        raise BadInput("empty", f"no triangles (found {what})")
    if faces > max_faces:
        raise BadInput("too_large", f"{faces} triangles drawn > max_faces={max_faces}")

    lo, hi, area = np.full(3, np.inf), np.full(3, -np.inf), 0.0
    for name, transforms in kept.items():
        geom = geometry[name]
        # Only referenced vertices: stray unused vertices must not shrink the object in view.
        verts = np.asarray(geom.vertices, dtype=np.float64)[np.unique(geom.faces)]
        if not np.isfinite(verts).all():
            raise BadInput("degenerate", f"non-finite vertex coordinates in {name!r}")
        area += float(geom.area) * len(transforms)
        for t in transforms:
            world = trimesh.transform_points(verts, t)
            lo, hi = np.minimum(lo, world.min(axis=0)), np.maximum(hi, world.max(axis=0))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise BadInput("degenerate", "non-finite bounds after the scene-graph transforms")
    extent = float((hi - lo).max())
    center = (lo + hi) / 2.0
    offset = float(np.abs(center).max())
    if extent <= min_extent or extent <= 64 * _FLOAT32_EPS * max(offset, 1e-30):
        raise BadInput("degenerate", f"extent {extent:.3g} too small (offset {offset:.3g})")
    if not area > 0.0:
        raise BadInput("degenerate", "every triangle has zero area")

    scale = 1.0 / extent
    normalise = np.diag([scale, scale, scale, 1.0])
    normalise[:3, 3] = -center * scale
    poses = {name: np.stack([normalise @ t for t in ts]) for name, ts in kept.items()}
    return PreparedObject(geometry={n: geometry[n] for n in kept}, poses=poses, center=center,
                          scale=scale, faces=faces, dropped=dict(dropped))
