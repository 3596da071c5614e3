"""Hostile annotation inputs (issue #23, part B): one bad value in each field a source reads
fails that one item with a reason, the other items still read, nothing escapes its root, no
FIFO blocks, and a bad annotation file is named (a `bad_file` row, or exit 2 when it is the only one)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sources.annotation_json import read_json
from sources.coco import CocoOptions, CocoSource
from sources.depth import DepthOptions, DepthSource
from sources.mpii import MpiiOptions, MpiiSource
from sources.paired import PairedOptions, PairedSource
from sources.pose_video import PoseVideoOptions, PoseVideoSource
from sources.segmentation import SegmentationOptions, SegmentationSource
from support.hostile_annotations import (COCO_BAD_FILES, COCO_ENTRY_CASES, COCO_FIELD_CASES, MPII_FIELD_CASES,
                                         POSE_FIELD_CASES, coco_data, mpii_people, spoiled_coco, write_coco,
                                         write_fifo, write_jpeg, write_mpii, write_png)
from support.posetrack import write_posetrack_video
from uvd.api import BuildContext, Source
from uvd.errors import ConfigError
from uvd.records import Failed, Item

CTX = BuildContext(dataset="hostile")


def read_all(src: Source, per_unit: int = 16) -> dict[str, Item | Failed]:
    """Every row a source yields, by item id; asserts one row per planned input and no id twice."""
    rows: dict[str, Item | Failed] = {}
    for payload in src.plan(per_unit):
        got = list(src.read(payload))
        assert src.planned_items(payload) == len(got)
        for r in got:
            assert r.item_id not in rows, f"{r.item_id} yielded twice"
            rows[r.item_id] = r
    return rows


def kind(r: Item | Failed) -> str:
    return "ok" if isinstance(r, Item) else r.reason.split(":", 1)[0]


def coco(ann: Path, images: Path, **kw) -> CocoSource:
    return CocoSource(CocoOptions(annotations=[str(a) for a in ([ann] if isinstance(ann, Path) else ann)],
                                  images_dir=str(images), **kw), CTX)


# --- COCO ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,spoil,expected", COCO_FIELD_CASES, ids=[c[0] for c in COCO_FIELD_CASES])
def test_coco_one_bad_field_fails_its_image_only(tmp_path, case, spoil, expected):
    ann, images = spoiled_coco(tmp_path, spoil)
    rows = read_all(coco(ann, images))
    assert kind(rows["2"]) == "ok"  # the good image of the same unit still reads
    assert kind(rows["1"]) in expected.split("|"), rows["1"]
    assert set(rows) == {"1", "2"}


def test_coco_escapes_never_read_the_file_outside(tmp_path):
    """The secret outside the images folder is a good JPEG: an escape would have read it (ok)."""
    for case, spoil, _ in COCO_FIELD_CASES:
        if case.startswith("file_name_") and case not in ("file_name_missing",):
            ann, images = spoiled_coco(tmp_path / case, spoil)
            r = read_all(coco(ann, images))["1"]
            assert isinstance(r, Failed), case
            assert "secret" not in r.reason or r.reason.startswith(("bad_path", "io")), (case, r.reason)


@pytest.mark.parametrize("case,spoil,pseudo,expected", COCO_ENTRY_CASES, ids=[c[0] for c in COCO_ENTRY_CASES])
def test_coco_entries_of_no_readable_image_get_a_row_of_their_own(tmp_path, case, spoil, pseudo, expected):
    ann, images = spoiled_coco(tmp_path, spoil)
    rows = read_all(coco(ann, images))
    assert kind(rows[pseudo]) == expected
    assert kind(rows["2"]) == "ok"


@pytest.mark.parametrize("case,content", COCO_BAD_FILES, ids=[c[0] for c in COCO_BAD_FILES])
def test_coco_bad_file_beside_a_good_one_is_one_named_row(tmp_path, case, content):
    good, images = write_coco(tmp_path, coco_data())
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    rows = read_all(coco([good, bad], images))
    assert kind(rows["1"]) == kind(rows["2"]) == "ok"
    assert kind(rows["bad_file:bad.json"]) == "bad_file" and "bad.json" in rows["bad_file:bad.json"].reason
    with pytest.raises(ConfigError, match="bad.json"):  # alone: nothing can be built, exit 2
        coco(bad, images).plan(16)


def test_coco_fifo_or_oversized_annotation_file_is_refused_without_blocking(tmp_path):
    good, images = write_coco(tmp_path, coco_data())
    fifo = write_fifo(tmp_path / "pipe.json")
    with pytest.raises(ConfigError, match="pipe.json.*not_a_file"):
        coco(fifo, images).plan(16)
    with pytest.raises(ConfigError, match="too_large"):
        coco(good, images, max_annotation_bytes=100).plan(16)
    with pytest.raises(ConfigError, match="nested too deep"):
        bad = tmp_path / "deep.json"
        bad.write_bytes(b"[" * 100_000 + b"]" * 100_000)
        read_json(str(bad), "coco")


def test_coco_payloads_carry_the_records_so_workers_never_open_the_file(tmp_path):
    ann, images = write_coco(tmp_path, coco_data())
    src = coco(ann, images)
    payloads = src.plan(1)
    ann.unlink()  # a worker must not need it any more
    rows = [r for p in payloads for r in src.read(p)]
    assert [kind(r) for r in rows] == ["ok", "ok"]
    assert rows[0].annotations["objects"][0]["keypoints"].shape == (17, 3)
    assert all(p["categories"] == [[1, "person", p["categories"][0][2]]] for p in payloads)


def test_coco_category_unknown_is_refused_even_when_the_unit_names_no_known_category(tmp_path):
    data = coco_data()
    for a in data["annotations"]:
        a["category_id"] = 5  # no such category, in every annotation of the unit
    ann, images = write_coco(tmp_path, data)
    rows = read_all(coco(ann, images))
    assert kind(rows["1"]) == kind(rows["2"]) == "bad_annotation"


def test_coco_annotation_id_twice_in_one_file_fails_its_image(tmp_path):
    data = coco_data()
    data["annotations"].append(dict(data["annotations"][0], bbox=[1, 1, 2, 2]))  # id 11 again
    ann, images = write_coco(tmp_path, data)
    rows = read_all(coco(ann, images))
    assert kind(rows["1"]) == "bad_annotation" and "listed twice" in rows["1"].reason
    assert kind(rows["2"]) == "ok"


def test_coco_two_files_merge_by_annotation_id_without_index_collisions(tmp_path):
    """Annotations without an `id` in two files must not be merged into one object."""
    a, b = coco_data(), coco_data()
    for d in (a, b):
        for ann in d["annotations"]:
            del ann["id"]
    pa, images = write_coco(tmp_path, a, "a.json")
    pb, _ = write_coco(tmp_path, b, "b.json")
    rows = read_all(coco([pa, pb], images))
    assert len(rows["1"].annotations["objects"]) == 2


# --- MPII ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,spoil,expected", MPII_FIELD_CASES, ids=[c[0] for c in MPII_FIELD_CASES])
def test_mpii_one_bad_field_fails_its_image_only(tmp_path, case, spoil, expected):
    people = mpii_people()
    spoil(people)
    ann, images = write_mpii(tmp_path, people)
    rows = read_all(MpiiSource(MpiiOptions(annotations=str(ann), images_dir=str(images)), CTX))
    assert kind(rows["b.jpg"]) == "ok"
    bad = [r for iid, r in rows.items() if iid != "b.jpg"]
    assert len(bad) == 1 and kind(bad[0]) == expected, bad


def test_mpii_entry_without_image_name_gets_a_row(tmp_path):
    people = mpii_people()
    people.append({"image": 5})
    people.append("not a person")
    ann, images = write_mpii(tmp_path, people)
    rows = read_all(MpiiSource(MpiiOptions(annotations=str(ann), images_dir=str(images)), CTX))
    assert kind(rows["entry:2"]) == kind(rows["entry:3"]) == "bad_json"
    assert kind(rows["a.jpg"]) == kind(rows["b.jpg"]) == "ok"


# --- PoseTrack (pose_video) -------------------------------------------------------------------

def _posetrack(root: Path, spoil=None) -> PoseVideoSource:
    folder = write_posetrack_video(root, "000042_mpii_train", frames=4)
    write_posetrack_video(root, "000043_mpii_train", frames=4)
    write_jpeg(root / "outside" / "secret.jpg")
    if spoil is not None:
        p = folder / "000042_mpii_train.json"
        data = json.loads(p.read_text())
        spoil(data)
        p.write_text(json.dumps(data))
    return PoseVideoSource(PoseVideoOptions(root=str(root), annotations=str(folder), frames_per_sentence=2), CTX)


@pytest.mark.parametrize("case,spoil,expected,pseudo", POSE_FIELD_CASES, ids=[c[0] for c in POSE_FIELD_CASES])
def test_pose_video_one_bad_field_fails_its_video_only(tmp_path, case, spoil, expected, pseudo):
    rows = read_all(_posetrack(tmp_path, spoil))
    assert kind(rows["000043"]) == "ok"
    assert kind(rows["000042"]) == expected, rows["000042"]
    if pseudo:
        assert any(k.startswith(pseudo) and kind(r) == "bad_json" for k, r in rows.items()), sorted(rows)


def test_pose_video_bad_file_is_one_named_row_and_alone_exit_2(tmp_path):
    src = _posetrack(tmp_path)
    folder = tmp_path / "annotations" / "train"
    (folder / "broken.json").write_text('{"images": [], "annotations": 5}')
    rows = read_all(src)
    assert kind(rows["000042"]) == kind(rows["000043"]) == "ok"
    assert kind(rows["bad_file:broken.json"]) == "bad_file"
    with pytest.raises(ConfigError, match="broken.json"):
        PoseVideoSource(PoseVideoOptions(root=str(tmp_path), annotations=str(folder / "broken.json")), CTX).plan(4)


def test_pose_video_repeated_in_a_second_file_gets_a_duplicate_row(tmp_path):
    src = _posetrack(tmp_path)
    folder = tmp_path / "annotations" / "train"
    (folder / "zcopy.json").write_text((folder / "000042_mpii_train.json").read_text())
    rows = read_all(src)
    assert kind(rows["000042"]) == "ok" and kind(rows["000042@zcopy.json"]) == "duplicate"


# --- dense file pairs: segmentation, depth, paired ---------------------------------------------

def _pairs(root: Path, a: str, b: str, bad_b) -> None:
    """Two items: `good` with real files, `bad` whose second file is written by `bad_b(path)`."""
    for name in ("good", "bad"):
        write_jpeg(root / a / f"{name}.jpg")
    write_png(root / b / "good.png", np.full((48, 64), 3, np.uint8))
    bad_b(root / b)


def _fifo_png(folder: Path) -> None:
    write_fifo(folder / "bad.png")


def _rgb_png(folder: Path) -> None:
    from PIL import Image
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "bad.png")


def _garbage_png(folder: Path) -> None:
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)


def _sparse_png(folder: Path) -> None:
    with open(folder / "bad.png", "wb") as f:  # 65 MiB on paper, nothing on disk
        f.truncate(65 << 20)


@pytest.mark.parametrize("bad_b,expected", [(_fifo_png, "not_a_file"), (_rgb_png, "label"), (_garbage_png, "decode"),
                                            (_sparse_png, "too_large")])
def test_segmentation_bad_label_file_fails_its_item_only(tmp_path, bad_b, expected):
    _pairs(tmp_path, "img", "lab", bad_b)
    rows = read_all(SegmentationSource(SegmentationOptions(images=str(tmp_path / "img"), labels=str(tmp_path / "lab")), CTX))
    assert kind(rows["good"]) == "ok" and kind(rows["bad"]) == expected, rows["bad"]


def _npy(value) -> object:
    def write(folder: Path) -> None:
        np.save(folder / "bad.npy", value, allow_pickle=True)
    return write


@pytest.mark.parametrize("bad_b,expected", [
    (_fifo_png, "not_a_file"), (_garbage_png, "decode"), (_rgb_png, "depth"), (_sparse_png, "too_large"),
    (_npy(np.array([{"a": 1}], dtype=object)), "decode"),  # a pickle: never loaded
    (_npy(np.zeros((2, 3, 4), np.float32)), "depth"), (_npy(np.array(["x", "y"])), "decode"),
])
def test_depth_bad_depth_file_fails_its_item_only(tmp_path, bad_b, expected):
    _pairs(tmp_path, "img", "dep", bad_b)
    rows = read_all(DepthSource(DepthOptions(images=str(tmp_path / "img"), depth=str(tmp_path / "dep")), CTX))
    assert kind(rows["good"]) == "ok" and kind(rows["bad"]) == expected, rows["bad"]


def test_depth_bad_normals_file_fails_its_item_only(tmp_path):
    _pairs(tmp_path, "img", "dep", lambda f: write_png(f / "bad.png", np.full((48, 64), 3, np.uint16)))
    (tmp_path / "nrm").mkdir()
    np.save(tmp_path / "nrm" / "good.npy", np.zeros((48, 64, 3), np.float32))
    np.save(tmp_path / "nrm" / "bad.npy", np.zeros((48, 64), np.float32))  # not H×W×3
    rows = read_all(DepthSource(DepthOptions(images=str(tmp_path / "img"), depth=str(tmp_path / "dep"),
                                             normals=str(tmp_path / "nrm")), CTX))
    assert kind(rows["good"]) == "ok" and kind(rows["bad"]) == "normals"


@pytest.mark.parametrize("bad_b,expected", [(_fifo_png, "not_a_file"), (_sparse_png, "too_large")])
def test_paired_bad_target_fails_its_item_only(tmp_path, bad_b, expected):
    _pairs(tmp_path, "x", "y", bad_b)
    rows = read_all(PairedSource(PairedOptions(inputs=str(tmp_path / "x"), targets=str(tmp_path / "y")), CTX))
    assert kind(rows["good"]) == "ok" and kind(rows["bad"]) == expected, rows["bad"]


# --- any exception, in any source: that item fails, the unit goes on ---------------------------

def _boom_on_bad(real):
    def read(url: str, *a, **kw):
        if "bad" in os.path.basename(str(url)):
            raise RuntimeError("unexpected failure")
        return real(url, *a, **kw)
    return read


@pytest.mark.parametrize("module", ["segmentation", "depth", "paired"])
def test_an_unexpected_exception_fails_one_item_with_its_type(tmp_path, monkeypatch, module):
    import importlib
    mod = importlib.import_module(f"sources.{module}")
    monkeypatch.setattr(mod, "read_bytes", _boom_on_bad(mod.read_bytes))
    _pairs(tmp_path, "a", "b", lambda f: write_png(f / "bad.png", np.full((48, 64), 3, np.uint8)))
    src = {"segmentation": lambda: SegmentationSource(SegmentationOptions(images=str(tmp_path / "a"), labels=str(tmp_path / "b")), CTX),
           "depth": lambda: DepthSource(DepthOptions(images=str(tmp_path / "a"), depth=str(tmp_path / "b")), CTX),
           "paired": lambda: PairedSource(PairedOptions(inputs=str(tmp_path / "a"), targets=str(tmp_path / "b")), CTX)}[module]()
    rows = read_all(src)
    assert kind(rows["good"]) == "ok"
    assert rows["bad"].reason == "error: RuntimeError: unexpected failure"


@pytest.mark.parametrize("module", ["coco", "mpii", "pose_video"])
def test_an_unexpected_exception_in_an_annotation_source_fails_one_item(tmp_path, monkeypatch, module):
    import importlib
    mod = importlib.import_module(f"sources.{module}")
    if module == "coco":
        ann, images = write_coco(tmp_path, coco_data())
        src, bad, good = coco(ann, images), "1", "2"
        monkeypatch.setattr(mod, "read_bytes", lambda url, *a, **k: (_ for _ in ()).throw(KeyError("x"))
                            if url.endswith("a.jpg") else open(url, "rb").read())
    elif module == "mpii":
        ann, images = write_mpii(tmp_path, mpii_people())
        src, bad, good = MpiiSource(MpiiOptions(annotations=str(ann), images_dir=str(images)), CTX), "a.jpg", "b.jpg"
        monkeypatch.setattr(mod, "read_bytes", lambda url, *a, **k: (_ for _ in ()).throw(KeyError("x"))
                            if url.endswith("a.jpg") else open(url, "rb").read())
    else:
        src, bad, good = _posetrack(tmp_path), "000042", "000043"
        monkeypatch.setattr(mod, "read_bytes", lambda url, *a, **k: (_ for _ in ()).throw(KeyError("x"))
                            if "000042" in url else open(url, "rb").read())
    rows = read_all(src)
    assert kind(rows[good]) == "ok"
    assert rows[bad].reason == "error: KeyError: 'x'"


# --- annotated video (DAVIS layout) -------------------------------------------------------------

def test_annotated_video_listed_names_without_folder_and_bad_masks_get_rows(tmp_path, monkeypatch):
    from demo.video import write_davis
    from sources.annotated_video import AnnotatedVideoOptions, AnnotatedVideoSource

    for v in ("good", "badmask", "boom"):
        write_davis(tmp_path, v, 3, width=64, height=48, objects=1)
    for png in (tmp_path / "Annotations" / "480p" / "badmask").glob("*.png"):
        png.write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    (tmp_path / "set.txt").write_text("good\nbadmask\nboom\nghost\n")
    import sources.annotated_video as av
    real = av.read_bytes
    monkeypatch.setattr(av, "read_bytes", lambda url, *a, **k: (_ for _ in ()).throw(ZeroDivisionError("z"))
                        if "/boom/" in url else real(url, *a, **k))
    src = AnnotatedVideoSource(AnnotatedVideoOptions(root=str(tmp_path), image_set=str(tmp_path / "set.txt"),
                                                     frames_per_sentence=2), CTX)
    rows = read_all(src)
    assert kind(rows["good"]) == "ok" and kind(rows["badmask"]) == "decode"
    assert rows["boom"].reason == "error: ZeroDivisionError: z"
    assert kind(rows["ghost"]) == "missing" and "image_set" in rows["ghost"].reason
