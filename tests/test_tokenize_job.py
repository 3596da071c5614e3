"""The tokenize job: sentence shards → token shards, committed per unit, resumable, nothing lost."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenize_job.inspect_tokens import contact_sheet, summarise
from tokenize_job.job import find_sentence_units, tokenize
from tokenize_job.vqgan import VQGAN, VQGANConfig
from tests.support.tokenizer import build_sentences
from uvd import codec
from uvd.cli import main as uvd_main
from uvd.layout import stats_file
from uvd.schema import TOKEN_SCHEMA
from uvd.shards import read_table, sentence_writer, shard_metadata
from uvd.storage import glob, read_json, sha256_of, write_json


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("tok")
    out, _ = build_sentences(tmp)
    torch.manual_seed(0)
    VQGAN(VQGANConfig.tiny()).save_pretrained(tmp / "tokenizer", name="tiny")
    return out, tmp / "tokenizer"


def quiet(_: str) -> None:
    pass


def test_token_shards_match_sentence_shards_unit_by_unit(built: tuple[str, Path]) -> None:
    out, tok = built
    result = tokenize(out, str(tok), use_ray=False, log=quiet)
    assert result.ok and result.ran == 3
    units = find_sentence_units(out)
    assert len(units) == 3
    for u in units:
        sent = read_table(u.sentences)
        tpath = f"{result.root}/{u.source}/part-{u.unit}.parquet"
        tokens = read_table(tpath)
        assert tokens.schema.remove_metadata().equals(TOKEN_SCHEMA)
        assert tokens.column("sentence_id").to_pylist() == sent.column("sentence_id").to_pylist()  # inputs = outputs
        for n, toks in zip(tokens.column("num_images").to_pylist(), tokens.column("tokens").to_pylist()):
            assert len(toks) == n * 256
            assert max(toks) < 512
        meta = shard_metadata(tpath)
        assert meta["kind"] == "tokens" and meta["codebook_size"] == "512" and meta["tokens_per_image"] == "256"
        assert json.loads(meta["config"])["num_embeddings"] == 512
        assert meta["weights_sha256"] == sha256_of(str(tok / "pytorch_model.bin"))[0]
        st = read_json(stats_file(tpath))
        assert st["inputs"] == st["ok"] + st["failed"] == sent.num_rows
    man = read_json(f"{result.root}/manifest.json")
    assert man["units_table"] == "manifest/units.parquet"  # written by the unit engine, as for builds
    rows = read_table(f"{result.root}/manifest/units.parquet").to_pylist()
    assert [(r["dataset"], r["unit"], r["status"]) for r in rows] == [("photos", u.unit, "done") for u in units]
    assert man["totals"]["sentences"] == 10 and man["totals"]["tokens"] == 10 * 256
    assert result.root.endswith("/tokens/" + man["tokenizer"]["tokenizer_id"])


def test_rerun_does_nothing_and_a_lost_unit_is_redone_identically(built: tuple[str, Path]) -> None:
    out, tok = built
    first = tokenize(out, str(tok), use_ray=False, log=quiet)
    shards = glob(first.root, "*/part-*.parquet")
    before = {p: sha256_of(p)[0] for p in shards}
    again = tokenize(out, str(tok), use_ray=False, log=quiet)
    assert again.ran == 0 and again.skipped == 3
    Path(stats_file(shards[1])).unlink()  # as if the job died before committing this unit
    redo = tokenize(out, str(tok), use_ray=False, log=quiet)
    assert redo.ran == 1
    assert {p: sha256_of(p)[0] for p in shards} == before  # deterministic: byte-identical


def test_a_bad_stored_image_fails_its_sentence_and_is_audited(tmp_path: Path, built: tuple[str, Path]) -> None:
    _, tok = built
    out = str(tmp_path / "handmade")
    shard = f"{out}/sentences/mixed/part-00000.parquet"
    good = codec.encode(np.full((256, 256, 3), 120, np.uint8))
    small = codec.encode(np.full((128, 128, 3), 120, np.uint8))
    w = sentence_writer(shard)
    rows = [("ok1", [good, good]), ("broken", [good, b"\xff\xd8\xff garbage"]), ("small", [small]), ("ok2", [good])]
    for sid, images in rows:
        w.add({"sentence_id": sid, "source": "mixed", "task": "image", "layout": "single",
               "num_images": len(images), "images": images, "meta": "{}"})
    info = w.close()
    write_json(stats_file(shard), {"shard": {"path": shard, "rows": info.rows, "sha256": info.sha256}})
    result = tokenize(out, str(tok), use_ray=False, log=quiet)
    st = read_json(stats_file(f"{result.root}/mixed/part-00000.parquet"))
    assert (st["inputs"], st["ok"], st["failed"]) == (4, 2, 2)
    assert st["failures"] == {"decode": 1, "size": 1}
    tokens = read_table(f"{result.root}/mixed/part-00000.parquet")
    assert tokens.column("sentence_id").to_pylist() == ["ok1", "ok2"]
    assert st["audit"]["path"] == "audit/mixed/part-00000.parquet"  # relative: a tokens folder can move
    audit = read_table(f"{result.root}/{st['audit']['path']}").to_pylist()
    assert [(r["item_id"], r["status"]) for r in audit] == [("ok1", "ok"), ("broken", "failed"), ("small", "failed"), ("ok2", "ok")]
    assert "tokenizer expects 256" in audit[2]["error"]


def test_uncommitted_sentence_shards_are_not_tokenized(tmp_path: Path, built: tuple[str, Path]) -> None:
    _, tok = built
    out = str(tmp_path / "partial")
    w = sentence_writer(f"{out}/sentences/x/part-00000.parquet")
    w.add({"sentence_id": "a", "source": "x", "task": "image", "layout": "single", "num_images": 1,
           "images": [codec.encode(np.zeros((256, 256, 3), np.uint8))], "meta": "{}"})
    w.close()  # no stats file: the build never committed this unit
    assert find_sentence_units(out) == []


def test_cli_and_inspect(built: tuple[str, Path], tmp_path: Path) -> None:
    out, tok = built
    assert uvd_main(["tokenize", out, "--tokenizer", str(tok), "--no-ray"]) == 0
    root = glob(out, "tokens/*")[0]
    text = summarise(root)
    assert "sentences:    10   images: 10   tokens: 2560" in text
    assert "range:        OK" in text and "lengths:      OK" in text
    png = tmp_path / "sheet.png"
    info = json.loads(contact_sheet(root, 0, str(tok), str(png)))
    sheet = codec.decode(png.read_bytes())
    assert info["with_originals"] and sheet.shape == (512, 256 * info["images"], 3)
    assert uvd_main(["tokenize", out, "--tokenizer", str(tmp_path / "nowhere"), "--no-ray"]) == 2
    # through `uvd inspect`, which summarises token shards with tokenize_job.inspect_tokens
    png2 = tmp_path / "sheet2.png"
    assert uvd_main(["inspect", root, "--sentence", "1", "--tokenizer", str(tok), "--out", str(png2)]) == 0
    assert codec.decode(png2.read_bytes()).shape[0] == 512


@pytest.mark.slow
def test_ray_data_job_gives_the_same_shards(built: tuple[str, Path], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    out, tok = built
    # The same torch thread count on both sides: on CPU another count can flip a token whose
    # two nearest codes tie within float rounding (docs/tokenizer.md, Determinism), and other
    # test modules leave this process at 1 thread while the Ray actor would take 2.
    before = torch.get_num_threads()
    try:
        local = tokenize(out, str(tok), out=str(tmp_path / "local_out"), use_ray=False, log=quiet, threads=2)
    finally:
        torch.set_num_threads(before)
    ray.shutdown()  # an earlier test's Ray may still be up in this process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = tokenize(out, str(tok), out=str(tmp_path / "ray_out"), use_ray=True, log=quiet, threads=2)
    finally:
        ray.shutdown()
    assert local.ran == 3 and remote.ok and remote.ran == 3
    for p in glob(local.root, "*/part-*.parquet"):
        q = p.replace(str(tmp_path / "local_out"), str(tmp_path / "ray_out"))
        assert q != p and sha256_of(q)[0] == sha256_of(p)[0]
    # the index rows came back from the actors with the stats: the same table either way
    from tokenize_job.token_index import read_index

    assert len(read_index(local.root)) == 3
    assert read_index(remote.root).to_pylist() == read_index(local.root).to_pylist()


def test_manifest_lists_the_shards_with_paths_relative_to_the_output(built: tuple[str, Path], tmp_path: Path) -> None:
    out, _ = built
    from uvd.engine import find_committed
    from uvd.layout import UnitLayout
    from uvd.manifest import write_manifest
    from uvd.plan import PlannedUnit

    # the build's units table names shards relative to the output, so a moved output still resolves
    planned = [PlannedUnit("photos", u, {}) for u in ("00000", "00001", "00002")]
    done = find_committed(UnitLayout.sentences(out), planned, lambda u: {})
    assert len(done) == 3
    write_manifest(UnitLayout.sentences(out), {}, planned, done)
    copy = tmp_path / "moved"
    shutil.copytree(Path(out) / "sentences", copy / "sentences")
    shutil.copytree(Path(out) / "manifest", copy / "manifest")
    (copy / "sentences" / "photos" / "part-00001.stats.json").unlink()  # uncommitted in the copy
    units = find_sentence_units(str(copy))
    assert [(u.source, u.unit) for u in units] == [("photos", "00000"), ("photos", "00002")]
    assert all(Path(u.sentences).is_file() and str(copy) in u.sentences and len(u.sentences_sha256) == 64
               for u in units)
