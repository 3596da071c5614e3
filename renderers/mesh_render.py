"""Render a prepared (unit-cube) object offscreen with pyrender from orbit cameras: RGB arrays out.

Conventions (also written into each sentence's meta):
- World: +Y up (glTF). The object's bounding box is centred at the origin, longest side 1.
- A view at azimuth a, elevation e, radius r sits at
  r·(cos e · sin a, sin e, cos e · cos a) and looks at the origin with +Y up, so azimuth 0
  looks down −Z from the +Z side (the glTF "front") and azimuth grows counter-clockwise seen
  from above. Its pose is camera-to-world in the OpenGL convention (camera looks down its −Z,
  +Y up in the image).
- Pinhole intrinsics from a vertical field of view (default 49.1°, the Blender camera of the
  Zero-1-to-3 Objaverse renders); square pixels, principal point at the image centre.
- Lighting, fixed for every object and every view (a rig that moves with the camera, so each
  view is lit alike whatever side of the object it shows): ambient 0.35, a key directional
  light of intensity 2.6 from 30° above and 30° to the left of the camera, a fill of 1.0 from
  20° below and 40° to the right. White background, 4× MSAA (pyrender's default).

One OffscreenRenderer per process and size, created on first use and reused for every object
(OpenGL context creation costs far more than a render). The GL platform (EGL or OSMesa) must
be chosen before OpenGL is first imported, so pyrender is imported lazily in `_pyrender()`.
"""
from __future__ import annotations

import atexit
import math
import os
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from renderers.mesh_normalise import PreparedObject
from uvd.errors import BadInput

Platform = Literal["auto", "egl", "osmesa"]
_RENDERERS: dict[tuple[int, int], Any] = {}

AMBIENT = 0.35
# (intensity, degrees up, degrees left) relative to the camera's view direction
LIGHTS = ((2.6, 30.0, 30.0), (1.0, -20.0, -40.0))


@dataclass(frozen=True)
class Intrinsics:
    width: int = 256
    height: int = 256
    yfov_deg: float = 49.1
    znear: float = 0.05
    zfar: float = 10.0

    @property
    def fy(self) -> float:
        return self.height / 2.0 / math.tan(math.radians(self.yfov_deg) / 2.0)

    def meta(self) -> dict[str, Any]:
        f = round(self.fy, 6)
        return {"width": self.width, "height": self.height, "yfov_deg": self.yfov_deg, "fx": f, "fy": f,
                "cx": self.width / 2.0, "cy": self.height / 2.0, "znear": self.znear, "zfar": self.zfar,
                "convention": "opengl_camera_to_world"}


@dataclass(frozen=True)
class View:
    azimuth_deg: float
    elevation_deg: float
    radius: float

    def position(self) -> np.ndarray:
        a, e = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        return self.radius * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])

    def pose(self) -> np.ndarray:
        """Camera-to-world 4×4 (OpenGL: the camera looks down its −Z), looking at the origin."""
        eye = self.position()
        back = eye / np.linalg.norm(eye)  # camera +Z points away from the target
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)  # |elevation| < 90° keeps this well defined
        up = np.cross(back, right)
        pose = np.eye(4)
        pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, up, back, eye
        return pose


def orbit(views: int, radius: float, elevation_deg: float, start_azimuth_deg: float = 0.0,
          step_deg: float = 15.0) -> list[View]:
    """`views` cameras at one radius and elevation, azimuth stepping by `step_deg`."""
    if not -90.0 < elevation_deg < 90.0:
        raise ValueError(f"elevation {elevation_deg} must lie strictly between -90 and 90 degrees")
    return [View(round((start_azimuth_deg + k * step_deg) % 360.0, 9), elevation_deg, radius) for k in range(views)]


def choose_platform(requested: Platform = "auto") -> str:
    """Set PYOPENGL_PLATFORM before OpenGL is imported: `auto` keeps the environment's, else EGL."""
    current = os.environ.get("PYOPENGL_PLATFORM")
    chosen = (current or "egl") if requested == "auto" else requested
    if "OpenGL" in sys.modules and current != chosen:
        raise RuntimeError(f"gl_platform {chosen!r}: OpenGL was already imported in this process with "
                           f"PYOPENGL_PLATFORM={current!r}; set it before anything imports OpenGL")
    os.environ["PYOPENGL_PLATFORM"] = chosen
    return chosen


def _pyrender(platform: Platform) -> Any:
    choose_platform(platform)
    import pyrender  # noqa: PLC0415 - must follow choose_platform

    return pyrender


def offscreen(width: int, height: int, platform: Platform = "auto") -> Any:
    """The process's cached OffscreenRenderer for this size."""
    r = _RENDERERS.get((width, height))
    if r is None:
        r = _pyrender(platform).OffscreenRenderer(width, height)
        r._renderer._sorted_mesh_nodes = types.MethodType(_sorted_mesh_nodes, r._renderer)
        _RENDERERS[(width, height)] = r
    return r


def _sorted_mesh_nodes(renderer: Any, scene: Any) -> list:
    """pyrender's draw order (solid, then transparent, far to near) with ties broken by node name.

    pyrender keeps mesh nodes in a set and sorts them by distance only; our instanced nodes all
    sit at the origin, so the order of alpha-blended parts came from object ids and differed
    between processes (16 of 16 views of a transparent glTF differed between two builds).
    """
    cam = scene.get_pose(scene.main_camera_node)[:3, 3]

    def key(n: Any) -> tuple[float, str]:
        return -round(float(np.linalg.norm(scene.get_pose(n)[:3, 3] - cam)), 9), n.name or ""

    nodes = sorted(scene.mesh_nodes, key=key)
    return [n for n in nodes if not n.mesh.is_transparent] + [n for n in nodes if n.mesh.is_transparent]


def close_all() -> None:
    """Release the GL contexts (tests, or a worker that stops rendering)."""
    while _RENDERERS:
        _, r = _RENDERERS.popitem()
        try:
            r.delete()
        except Exception:  # a context already torn down at exit must not mask the real error
            pass


atexit.register(close_all)


def _light_offset(up_deg: float, left_deg: float) -> np.ndarray:
    """Rotation (in camera space) turning the camera's −Z into a direction from up-left of it."""
    a, b = math.radians(-left_deg), math.radians(-up_deg)
    ry = np.array([[math.cos(a), 0, math.sin(a), 0], [0, 1, 0, 0], [-math.sin(a), 0, math.cos(a), 0], [0, 0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, math.cos(b), -math.sin(b), 0], [0, math.sin(b), math.cos(b), 0], [0, 0, 0, 1]])
    # A directional light travels along its own −Z: to arrive from up-left it must travel down-right.
    return ry @ rx


def build_scene(obj: PreparedObject, intrinsics: Intrinsics, platform: Platform = "auto") -> tuple[Any, Any, list]:
    """(scene, camera node, [(light node, offset)]) for one object; textures and vertex colours kept."""
    pr = _pyrender(platform)
    scene = pr.Scene(bg_color=[1.0, 1.0, 1.0, 1.0], ambient_light=[AMBIENT] * 3)
    for i, (name, geom) in enumerate(obj.geometry.items()):
        # pyrender cannot interpolate per-face colours: such meshes go flat-shaded.
        smooth = getattr(geom.visual, "kind", None) != "face"
        # the name fixes the draw order of alpha-blended parts (_sorted_mesh_nodes)
        scene.add(pr.Mesh.from_trimesh(geom, smooth=smooth, poses=obj.poses[name]), name=f"{i:06d}")
    camera = pr.PerspectiveCamera(yfov=math.radians(intrinsics.yfov_deg), znear=intrinsics.znear,
                                  zfar=intrinsics.zfar, aspectRatio=intrinsics.width / intrinsics.height)
    cam_node = scene.add(camera, pose=np.eye(4))
    lights = []
    for intensity, up, left in LIGHTS:
        node = scene.add(pr.DirectionalLight(color=np.ones(3), intensity=intensity), pose=np.eye(4))
        lights.append((node, _light_offset(up, left)))
    return scene, cam_node, lights


def render_views(obj: PreparedObject, views: list[View], intrinsics: Intrinsics = Intrinsics(),
                 platform: Platform = "auto", max_seconds: float | None = None) -> list[np.ndarray]:
    """One H×W×3 uint8 RGB image per view. With `max_seconds`, an object whose views take longer
    fails with `timeout` (checked between views: a single draw call cannot be interrupted)."""
    start = time.monotonic()
    pr = _pyrender(platform)
    renderer = offscreen(intrinsics.width, intrinsics.height, platform)
    scene, cam_node, lights = build_scene(obj, intrinsics, platform)
    flags = pr.RenderFlags.SKIP_CULL_FACES  # Objaverse winding is unreliable: draw both sides
    images = []
    for i, view in enumerate(views):
        if max_seconds is not None and time.monotonic() - start > max_seconds:
            raise BadInput("timeout", f"rendering exceeded {max_seconds:g}s after {i}/{len(views)} views")
        pose = view.pose()
        scene.set_pose(cam_node, pose)
        for node, offset in lights:
            scene.set_pose(node, pose @ offset)
        color, _ = renderer.render(scene, flags=flags)
        images.append(np.ascontiguousarray(color[:, :, :3]))
    return images
