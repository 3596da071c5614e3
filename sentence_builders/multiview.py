"""`multiview`: one 3D object → views rendered on an orbit → `sequence` sentence(s), task `multiview`.

The paper's recipe: 24 views, one camera radius drawn in [1.5, 2.2] and one elevation in
[-45°, 45°] per object, azimuth stepping by 15° (a full turn). 24 views exceed the 16-image
cap, so `sentences` chooses how views become sentences:
- `window` (default): one sentence of `views_per_sentence` consecutive views, the first view
  drawn per object; only those views are rendered.
- `chunks`: all views rendered and cut into consecutive sentences of `views_per_sentence`
  (24 → 2×12 or 3×8); a shorter tail joins as its own sentence if it has ≥ `min_views`.
Radius, elevation, start azimuth and window all come from ctx.rng(item_id, ...).
"""
from __future__ import annotations

from typing import Iterable, Literal, Union

from pydantic import Field, model_validator

from renderers.mesh_normalise import prepare
from renderers.mesh_render import Intrinsics, View, orbit, render_views
from uvd.api import Builder
from uvd.config import Strict
from uvd.errors import BadInput
from uvd.records import Failed, Item, VisualSentence

LIGHTING = "camera_rig_v1"  # see renderers/mesh_render.py; bump when the set-up changes


class MultiviewOptions(Strict):
    operational_keys = frozenset({"max_render_seconds"})  # not in the unit recipe
    views: int = Field(24, ge=1)
    azimuth_step_deg: float = 15.0
    radius: tuple[float, float] = (1.5, 2.2)
    elevation_deg: tuple[float, float] = (-45.0, 45.0)
    start_azimuth: Literal["random", "zero"] = "random"
    sentences: Literal["window", "chunks"] = "window"
    views_per_sentence: int = Field(16, ge=1)
    min_views: int = Field(2, ge=1)
    yfov_deg: float = Field(49.1, gt=0, lt=180)
    gl_platform: Literal["auto", "egl", "osmesa"] = "auto"
    max_faces: int = Field(2_000_000, ge=1)
    max_render_seconds: float = Field(60.0, gt=0)  # per object, checked between views
    lossless: bool = False  # renders are photo-like: JPEG by default

    @model_validator(mode="after")
    def _ranges(self) -> "MultiviewOptions":
        (r0, r1), (e0, e1) = self.radius, self.elevation_deg
        if not 0 < r0 <= r1:
            raise ValueError("radius must be [low, high] with 0 < low <= high")
        if not -90 < e0 <= e1 < 90:
            raise ValueError("elevation_deg must be [low, high] inside (-90, 90)")
        return self


class MultiviewBuilder(Builder):
    name = "multiview"
    Options = MultiviewOptions

    def cameras(self, item_id: str) -> tuple[float, float, float]:
        """(radius, elevation, start azimuth), drawn in a fixed order whatever the options."""
        o = self.options
        rng = self.ctx.rng(item_id, "cameras")
        radius = float(rng.uniform(*o.radius))
        elevation = float(rng.uniform(*o.elevation_deg))
        start = float(rng.uniform(0.0, 360.0))
        return round(radius, 6), round(elevation, 6), (round(start, 6) if o.start_azimuth == "random" else 0.0)

    def _groups(self, item_id: str, per: int) -> list[list[int]]:
        o = self.options
        if o.sentences == "window":
            first = int(self.ctx.rng(item_id, "window").integers(o.views))
            return [[(first + k) % o.views for k in range(min(per, o.views))]]
        groups = [list(range(s, min(s + per, o.views))) for s in range(0, o.views, per)]
        return [g for g in groups if len(g) >= min(o.min_views, o.views)]

    def process(self, item: Item) -> Iterable[Union[VisualSentence, Failed]]:
        o = self.options
        if item.mesh is None:
            raise BadInput("no_mesh", "item carries no mesh (use an objects source)")
        obj = prepare(item.mesh, max_faces=o.max_faces)
        radius, elevation, start = self.cameras(item.item_id)
        views = orbit(o.views, radius, elevation, start, o.azimuth_step_deg)
        per = min(o.views_per_sentence, self.ctx.max_images)
        groups = self._groups(item.item_id, per)
        if not groups:
            raise BadInput("filtered", f"no sentence of >= min_views={o.min_views} views from {o.views} views")
        wanted = sorted({i for g in groups for i in g})
        size = self.ctx.image.size
        intr = Intrinsics(width=size, height=size, yfov_deg=o.yfov_deg)
        rendered = dict(zip(wanted, render_views(obj, [views[i] for i in wanted], intr, o.gl_platform,
                                                 o.max_render_seconds)))
        base = {
            "dataset": self.ctx.dataset, "item_id": item.item_id, **item.provenance,
            "seed": self.ctx.seed, "intrinsics": intr.meta(), "radius": radius, "elevation_deg": elevation,
            "azimuth_step_deg": o.azimuth_step_deg, "views_total": o.views, "lighting": LIGHTING,
            "normalisation": obj.meta(),
        }
        for n, group in enumerate(groups):
            # What shapes the pixels and cameras: not the platform nor the limits that only refuse.
            recipe = {**o.model_dump(mode="json", exclude={"gl_platform", "max_faces", "max_render_seconds"}),
                      "builder": "multiview", "view_indices": group}
            yield VisualSentence(
                sentence_id=self.ctx.sentence_id([item.item_id], recipe),
                source=self.ctx.dataset, task="multiview", layout="sequence",
                images=[rendered[i] for i in group],
                meta={**base, "sentence_index": n, "view_indices": group,
                      "azimuth_deg": [views[i].azimuth_deg for i in group],
                      "poses": [_pose_meta(views[i]) for i in group]},
                lossless=[o.lossless] * len(group),
                item_ids=[item.item_id],
            )


def _pose_meta(view: View) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in view.pose()]
