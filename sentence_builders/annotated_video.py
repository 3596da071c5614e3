"""`interleaved` (frame1, annot1, frame2, annot2, …) and `grouped` (frame1 … frameN, annot1 …
annotN) sentences of annotated video, as the LVM paper lays them out.

Annotations are id maps coloured through the shared palette (renderers/palette.py) or RGB
images; either is resized with nearest-neighbour so that no two colours blend, and stored
losslessly. An annotation of another size than its frame is first brought to the frame's
size, so the centre crop cuts both alike.

Video with pose (`source: pose_video`): each frame's people (`keypoints_per_frame`, any
format of uvd/keypoint_formats.py) are drawn as OpenPose skeletons on black, straight at the
output size with the frame's own resize/crop mapping (as the `pose` task draws photos).
"""
from __future__ import annotations

from typing import ClassVar, Iterable, Literal

import cv2
import numpy as np
from pydantic import Field

from renderers.palette import colorize
from renderers.pose import render_pose
from uvd.api import Builder
from uvd.config import Strict
from uvd.errors import BadInput
from uvd.image import decode_image, fit_transform, normalise
from uvd.records import Item, VisualSentence


class AnnotatedVideoOptions(Strict):
    task: str = Field("video_segmentation", min_length=1)  # e.g. video_pose for PoseTrack-style items


def skeleton_image(people: np.ndarray, keypoint_format: str, frame_hw: tuple[int, int], size: int,
                   resize: str) -> np.ndarray:
    """(P, K, 3) people in frame pixels → their skeletons on a black size×size canvas, aligned
    with the frame as `normalise` resizes and crops it."""
    h, w = frame_hw
    kp = np.array(people, np.float64).reshape(len(people), -1, 3)
    kp[..., :2] = fit_transform(w, h, size, resize).points(kp[..., :2])
    return render_pose(kp, size, size, keypoint_format=keypoint_format)


def annotation_image(ann: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """An id map or RGB annotation → RGB at the frame's size (nearest-neighbour, no new colours)."""
    rgb = colorize(ann) if ann.ndim == 2 else ann
    h, w = frame_hw
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)
    return rgb


class AnnotatedVideoBuilder(Builder):
    name = "annotated_video"
    Options = AnnotatedVideoOptions
    layout: ClassVar[Literal["interleaved", "grouped"]] = "interleaved"

    def process(self, item: Item) -> Iterable[VisualSentence]:
        masks, clips = item.annotations.get("masks"), item.annotations.get("clips")
        people = item.annotations.get("keypoints_per_frame")
        if (masks is None and people is None) or not clips:
            raise BadInput("input", "annotated video items need annotations['masks'] or ['keypoints_per_frame'], "
                                    "and ['clips'] (sources: annotated_video, pose_video)")
        fmt = item.annotations.get("keypoint_format") or "coco"
        position = {idx: k for k, idx in enumerate(item.annotations["frame_indices"])}
        names = item.annotations.get("frame_names")
        spec = self.ctx.image
        for clip in clips:
            frames, annots = [], []
            for i in clip["indices"]:
                k = position[i]
                frame = item.images[k] if isinstance(item.images[k], np.ndarray) else decode_image(item.images[k], spec)
                frames.append(normalise(frame, spec))
                if masks is not None:
                    annots.append(normalise(annotation_image(masks[k], frame.shape[:2]), spec,
                                            interpolation=cv2.INTER_NEAREST))
                else:
                    annots.append(skeleton_image(people[k], fmt, frame.shape[:2], spec.size, spec.resize))
            n = len(frames)
            if 2 * n > self.ctx.max_images:
                raise BadInput("too_long", f"{n} frames + {n} annotations > max_images {self.ctx.max_images}")
            if self.layout == "interleaved":
                images = [img for pair in zip(frames, annots) for img in pair]
                lossless = [False, True] * n
            else:
                images = frames + annots
                lossless = [False] * n + [True] * n
            recipe = {"builder": self.layout, "stride": clip["requested_stride"], "start": clip["start"],
                      "indices": clip["indices"]}
            yield VisualSentence(
                sentence_id=self.ctx.sentence_id([item.item_id], recipe),
                source=self.ctx.dataset, task=self.options.task, layout=self.layout, images=images,
                meta={"dataset": self.ctx.dataset, "item_id": item.item_id, **item.provenance,
                      "frame_indices": clip["indices"], "stride": clip["stride"],
                      "requested_stride": clip["requested_stride"], "start": clip["start"],
                      **({"frame_names": [names[position[i]] for i in clip["indices"]]} if names else {}),
                      "seed": self.ctx.seed},
                lossless=lossless, item_ids=[item.item_id],
            )


class InterleavedBuilder(AnnotatedVideoBuilder):
    name = "interleaved"
    layout = "interleaved"


class GroupedBuilder(AnnotatedVideoBuilder):
    name = "grouped"
    layout = "grouped"
