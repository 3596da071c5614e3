"""Where a build config's recipe differs from LVM's released data scripts (ytongbai/LVM,
tokenize_examples/ and evaluation/vqlm_demo/utils.py), for `uvd plan`.

A difference is "chosen" where UVD departs from the scripts on purpose: the paper followed where it
and the scripts disagree, or an identical sentence never written twice; configs/uvdv1.yaml has only
those. Anything else printed is a departure from LVM that the
config asked for (configs/uvdv1_plus.yaml's improvements, or a hand-written option).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from uvd import registry
from uvd.config import BuildConfig, DatasetConfig

# The paper's sentences end with an end-of-sentence token; EasyLM's packing in LVM's release adds none.
EOS = ("an end-of-sentence token after every sentence (the paper; the trainer appends it), where LVM's "
       "EasyLM packing adds none")


@dataclass(frozen=True)
class Difference:
    text: str
    chosen: bool = False  # the paper over the released script, on purpose


def _options(kind: str, name: str, args: dict[str, Any]) -> SimpleNamespace:
    """The options as written, defaults filled in, without the validators: a dataset whose data is
    missing (its paths refused) still shows how its recipe differs."""
    fields = registry.lookup(kind, name).Options.model_fields
    return SimpleNamespace(**{k: args.get(k, f.get_default(call_default_factory=True)) for k, f in fields.items()})


def _pairs(b: Any) -> list[Difference]:
    from sentence_builders.pairs import default_epochs  # the CLI layer may import plug-ins

    out = []
    lvm_epochs = default_epochs(b.task)
    if b.task not in ("colorization", "inpainting") and lvm_epochs == 1:
        out.append(Difference(f"task {b.task}: no LVM script makes it"))
    if b.grouping == "unit":
        out.append(Difference("pairs grouped inside a unit (LVM: a fresh permutation of the whole dataset per epoch)"))
    elif b.remainder == "fresh":
        out.append(Difference("a random remainder left out per epoch (LVM never uses its last total % 8 items)"))
    epochs = b.epochs if b.epochs is not None else lvm_epochs
    if epochs != lvm_epochs:
        out.append(Difference(f"epochs {epochs} (LVM: {lvm_epochs})"))
    if b.pairs != 8:
        out.append(Difference(f"pairs {b.pairs} per sentence (LVM: n_shots=8)"))
    return out


def _multitask(b: Any) -> list[Difference]:
    out = []
    if b.grouping == "unit":
        out.append(Difference("shots grouped inside a unit (LVM: a fresh permutation of the whole dataset per epoch)"))
    elif b.remainder == "fresh":
        out.append(Difference("a random remainder left out per epoch (LVM's is fixed once, after its shuffle)"))
    if b.epochs != 5:
        out.append(Difference(f"epochs {b.epochs} (LVM: n_epochs=5)"))
    if b.shots != 3:
        out.append(Difference(f"shots {b.shots} (LVM: n_shots=3)"))
    if not b.shuffle_modalities:
        out.append(Difference("modality order fixed (LVM: shuffle_tasks, one order per sentence)"))
    return out


def _video(s: Any) -> list[Difference]:
    out = []
    if s.max_overlap < 1.0:
        out.append(Difference(f"max_overlap {s.max_overlap:g}: a reduced-stride clip overlapping another is dropped "
                              "(LVM keeps one random start per stride)"))
    if s.clips_per_stride != 1:
        out.append(Difference(f"clips_per_stride {s.clips_per_stride} (LVM: one random start per stride)"))
    if s.short_policy != "reduce_stride":
        out.append(Difference("a stride that does not fit a short video is skipped (LVM reduces it)"))
    else:  # tests/test_lvm_video.py
        out.append(Difference("two strides reduced to the same stride never take the same start (one sentence id "
                              "each); LVM's independent draws may write that clip twice", chosen=True))
    if s.clip_len != 16:
        out.append(Difference(f"clip_len {s.clip_len} (LVM: n_frames=16)"))
    return out


def differences(cfg: BuildConfig, ds: DatasetConfig) -> list[Difference]:
    """One dataset's departures from LVM (options as parsed, defaults included)."""
    out = []
    if cfg.image.resize != "squash":
        out.append(Difference(f"resize {cfg.image.resize} (LVM squashes every image and frame to 256×256: "
                              "evaluation/vqlm_demo/utils.py)"))
    if ds.builder == "pairs":
        out += _pairs(_options("builder", ds.builder, ds.builder_args))
    if ds.builder == "multitask":
        out += _multitask(_options("builder", ds.builder, ds.builder_args))
    if ds.source == "video":
        out += _video(_options("source", ds.source, ds.source_args))
    if ds.source == "co3d":
        out.append(Difference("one sequence's views per sentence; LVM's tokenize_co3d_muse.py writes image→mask and "
                              "image→depth-mask sentences of 4 sequences × 4 frames, which UVD does not build"))
    if ds.builder == "category":
        out.append(Difference("images of one category per sentence (the paper); tokenize_catogory_images_muse.py "
                              "mixes 4 classes × 4 images", chosen=True))
    return out


def _is_pairs(task: Callable[[str], bool]) -> Callable[[DatasetConfig], bool]:
    return lambda ds: ds.builder == "pairs" and task(str(ds.builder_args.get("task", "")))


# LVM's data scripts (tokenize_examples/) and which datasets of a config are theirs.
SCRIPTS: list[tuple[str, Callable[[DatasetConfig], bool], str]] = [
    ("tokenize_paired_dataset_muse.py", _is_pairs(lambda t: t not in ("colorization", "inpainting")),
     "no `pairs` dataset in this config"),
    ("tokenize_colorization_dataset_muse.py", _is_pairs(lambda t: t == "colorization"),
     "no `pairs` dataset with task colorization"),
    ("tokenize_inpainting_dataset_muse.py", _is_pairs(lambda t: t == "inpainting"),
     "no `pairs` dataset with task inpainting"),
    ("tokenize_video_muse.py", lambda ds: ds.source == "video", "no `video` dataset"),
    ("tokenize_seq_images_muse.py", lambda ds: ds.builder == "video" or ds.source == "annotated_video",
     "no video or frame-folder dataset"),
    ("tokenize_catogory_images_muse.py", lambda ds: ds.builder == "category", "no `category` dataset"),
    ("tokenize_multi_datasets_muse.py", lambda ds: ds.builder == "multitask",
     "no `multitask` dataset (a photo and its pseudo-labels, 3 shots, modality order shuffled)"),
    ("tokenize_co3d_muse.py", lambda ds: ds.source == "co3d", "no `co3d` dataset"),
    ("tokenize_multi_seq_images_muse.py", lambda ds: ds.source == "kitti",
     "UVD has no KITTI source (the multi-task KITTI block)"),
]


def lvm_report(cfg: BuildConfig, planned: set[str], missing: dict[str, str]) -> str:
    """Lines for `uvd plan`: per dataset its differences, then every LVM script: planned or why not."""
    w = max([len("all datasets"), *(len(ds.key) for ds in cfg.datasets)]) + 2  # never run together
    lines = ["", "differences from LVM's released scripts (ytongbai/LVM); 'chosen' = on purpose (the paper over the "
             "scripts, no identical sentence twice):",
             f"  {'all datasets':<{w}}chosen: {EOS}"]
    for ds in cfg.datasets:
        try:
            diffs = differences(cfg, ds)
        except Exception as err:  # options that do not parse are reported by the plan already
            diffs = [Difference(f"options not readable: {str(err).splitlines()[-1]}")]
        for d in diffs:
            lines.append(f"  {ds.key:<{w}}{'chosen: ' if d.chosen else ''}{d.text}")
    lines += ["", "LVM's data scripts:"]
    for script, mine, absent in SCRIPTS:
        ours = [ds.key for ds in cfg.datasets if mine(ds)]
        done = [k for k in ours if k in planned]
        if done:
            lines.append(f"  {script:<40}planned: {', '.join(done)}")
        elif ours:
            why = missing.get(ours[0], "no units")
            lines.append(f"  {script:<40}NOT PLANNED: {ours[0]}: {why.splitlines()[-1].strip()}")
        else:
            lines.append(f"  {script:<40}NOT PLANNED: {absent}")
    others = [ds.key for ds in cfg.datasets if not any(mine(ds) for _, mine, _ in SCRIPTS)]
    if others:  # the paper's data with no released script to compare with (LAION, Objaverse, tuples, …)
        lines.append(f"  {'(no released LVM script)':<40}{', '.join(others)}")
    return "\n".join(lines)
