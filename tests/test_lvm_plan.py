"""`uvd plan` against LVM's released scripts: configs/uvdv1.yaml differs only where chosen on purpose,
configs/uvdv1_plus.yaml lists its improvements, and every LVM data script is planned or NOT PLANNED."""
from __future__ import annotations

from pathlib import Path

import pytest

from uvd.cli.lvm_diff import SCRIPTS, differences, lvm_report
from uvd.cli.plan_cmd import items_in
from uvd.cli.plugins import register_builtin
from uvd.config import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _tables() -> None:
    register_builtin()


def test_uvdv1_differs_from_lvm_only_where_chosen() -> None:
    cfg = load_config(ROOT / "configs" / "uvdv1.yaml")
    assert cfg.image.resize == "squash"
    diffs = {ds.key: differences(cfg, ds) for ds in cfg.datasets}
    # the one departure not chosen: UVD has no builder for LVM's CO3D image→mask sentences (sources/co3d.py)
    assert [(k, d.text.split(";")[0]) for k, ds in diffs.items() for d in ds if not d.chosen] == [
        ("co3d", "one sequence's views per sentence")]
    assert any("one category" in d.text for d in diffs["imagenet_category"])
    text = lvm_report(cfg, {ds.key for ds in cfg.datasets}, {})
    assert "end-of-sentence token after every sentence" in text
    for script, _, _ in SCRIPTS:  # every LVM data script has its line: planned or why not
        line = next(l for l in text.splitlines() if l.strip().startswith(script))
        assert "planned: " in line or "NOT PLANNED: " in line
    assert "tokenize_paired_dataset_muse.py" in text and "planned: coco_detection" in text


def test_uvdv1_plus_lists_each_improvement_per_dataset() -> None:
    cfg = load_config(ROOT / "configs" / "uvdv1_plus.yaml")
    diffs = {ds.key: [d.text for d in differences(cfg, ds) if not d.chosen] for ds in cfg.datasets}
    assert any("resize center_crop" in t for t in diffs["coco_detection"])
    assert any("random remainder" in t for t in diffs["coco_detection"])
    assert any("max_overlap 0.5" in t for t in diffs["video"])
    assert any("random remainder" in t for t in diffs["coco_multitask"])
    base = load_config(ROOT / "configs" / "uvdv1.yaml")
    assert [ds.key for ds in cfg.datasets] == [ds.key for ds in base.datasets]  # same data, other recipe


def test_a_missing_dataset_says_why_and_an_absent_script_says_so() -> None:
    cfg = load_config(ROOT / "configs" / "uvdv1.yaml")
    planned = {ds.key for ds in cfg.datasets if ds.key != "video"}
    text = lvm_report(cfg, planned, {"video": "source_args: root: no such folder: /nowhere"})
    assert "tokenize_video_muse.py                  NOT PLANNED: video: source_args: root: no such folder" in text
    assert "tokenize_multi_seq_images_muse.py       NOT PLANNED: UVD has no KITTI source" in text
    assert "tokenize_co3d_muse.py                   planned: co3d" in text


def test_items_of_a_regrouped_unit_count_its_groups_and_left_out_items() -> None:
    payload = {"regroup": {"epoch": 1, "epochs": 5, "groups": [["a", "b"], ["c", "d"]], "dropped": [["e", "why"]]},
               "parts": [{"label": "", "files": [["a", "a"], ["b", "b"], ["c", "c"], ["d", "d"]]}]}
    assert items_in(payload) == 5


def test_plan_columns_hold_a_long_dataset_name_apart() -> None:
    from uvd.cli.plan_cmd import report
    from uvd.config import BuildConfig

    cfg = BuildConfig.model_validate({"datasets": [
        {"name": "imagenet_pl_segmentation", "source": "image_folder", "source_args": {"root": "/"}, "builder": "single"}]})
    text = report(cfg, [], {}, 989, 0.4, missing={"imagenet_pl_segmentation": "pseudo_label.model: path does not exist"})
    assert "imagenet_pl_segmentation NOT PLANNED: pseudo_label.model" in text
