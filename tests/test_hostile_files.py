"""Hostile files and folders (issue #23): paths out of their root, FIFOs and devices, caps on tar
members and side files, non-UTF-8 names, one bad value failing one item. Inputs from
tests/support/hostile_corpus.py; the table is in docs/hostile_inputs.md."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sources.img2dataset_output as img2dataset_output
from tests.support import hostile_corpus as hc
from uvd.config import BuildConfig
from uvd.records import Failed
from uvd.unit import make_source


def _kinds(audit: dict[str, dict[str, Any]]) -> dict[str, str]:
    # img2dataset samples without a URL or hash take their key as the id: `row@<file>:<key>`
    return {k.split(":", 1)[1] if k.startswith("row@") else k: hc.kind(r) for k, r in audit.items()}


def test_list_file_lines_stay_under_its_folder(tmp_path: Path) -> None:
    lst, expect = hc.list_file(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "image_folder", {"list_file": str(lst)}, seconds=60)
    assert summary.succeeded and {k: hc.kind(r) for k, r in audit.items()} == expect
    assert problems == []


def test_img2dataset_tar_samples_fail_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expect = hc.img2dataset_tars(tmp_path / "in")
    monkeypatch.setattr(img2dataset_output, "MAX_ITEM_BYTES", 20_000)  # the 2000×1500 member is over it
    summary, audit, problems = hc.build_audit(tmp_path / "out", "img2dataset", {"root": str(tmp_path / "in")},
                                              seconds=60)
    assert summary.succeeded and not summary.failed_units
    assert _kinds(audit) == expect
    assert problems == []


def test_img2dataset_files_layout_fifo_and_deep_json(tmp_path: Path) -> None:
    expect = hc.img2dataset_files(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "img2dataset",
                                              {"root": str(tmp_path / "in"), "layout": "files"}, seconds=60)
    assert summary.succeeded and _kinds(audit) == expect
    assert problems == []


def _read_all(tmp_path: Path, source: str, args: dict[str, Any], builder: str) -> dict[str, str]:
    cfg = BuildConfig.model_validate({"out": str(tmp_path / "out"), "datasets": [
        {"name": "h", "source": source, "source_args": args, "builder": builder}]})
    src = make_source(cfg, cfg.datasets[0])
    got: dict[str, str] = {}
    try:
        with hc.deadline(60):
            for payload in src.plan(10):
                for it in src.read(payload):
                    assert it.item_id not in got
                    got[it.item_id] = it.reason.split(":")[0] if isinstance(it, Failed) else "ok"
    finally:
        src.close()
    return got


def test_gltf_buffers_that_block_or_leave_the_folder(tmp_path: Path) -> None:
    expect = hc.meshes(tmp_path / "in")
    assert _read_all(tmp_path, "objaverse", {"root": str(tmp_path / "in" / "objs")}, "multiview") == expect


def test_video_list_fifo_device_and_escape(tmp_path: Path) -> None:
    lst, expect = hc.video_list(tmp_path / "in")
    assert _read_all(tmp_path, "video", {"list_file": str(lst)}, "video") == expect
