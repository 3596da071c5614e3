"""Fault drill for the tokenize job: kill the driver mid-run, rerun; only unfinished units are redone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from tests.support.cluster import kill_when_committed, stop_cluster
from tokenize_job.job import tokenize
from tokenize_job.vqgan import VQGAN, VQGANConfig
from tests.support.tokenizer import build_sentences

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent  # so that subprocesses import tests.support
UNITS = 10


def _env(ray_tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_TMPDIR"] = str(ray_tmp)  # the job's local Ray lives here, so the drill can find all of it
    env["UVD_TORCH_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    return env


def _cmd(build: str, tok: Path) -> list[str]:
    return [sys.executable, "-m", "uvd", "tokenize", build, "--tokenizer", str(tok), "--threads", "1"]


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


def test_killing_the_tokenize_driver_then_rerunning_redoes_only_unfinished_units(tmp_path: Path) -> None:
    # 10 units of 8 images each: slow enough on one CPU thread to kill the job between units
    build, _ = build_sentences(tmp_path, items_per_unit=8, generated=8 * UNITS - 4)  # + 4 sample photos
    assert len(list(Path(build, "sentences", "photos").glob("*.stats.json"))) == UNITS
    torch.manual_seed(0)
    tok = tmp_path / "tokenizer"
    VQGAN(VQGANConfig.tiny()).save_pretrained(tok, name="tiny")

    reference = tokenize(build, str(tok), out=str(tmp_path / "reference"), use_ray=False, log=lambda _: None)
    assert reference.ok and reference.ran == UNITS
    ref_root = Path(reference.root)
    root = Path(build) / ref_root.relative_to(tmp_path / "reference")  # same <tokens>/<tokenizer-id>, in the build
    stats_dir = root / "photos"

    ray_tmp = Path(tempfile.mkdtemp(prefix="uvdtk-", dir="/tmp"))  # short: Ray's socket paths
    try:
        with open(tmp_path / "killed.log", "w") as log:  # a file, not a pipe: Ray's output must never block it
            proc = subprocess.Popen(_cmd(build, tok), env=_env(ray_tmp), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # its own process group: the drill kills all of it
            kill_when_committed(proc, stats_dir, ray_tmp, timeout=180)  # the encoder actor included
        killed_log = (tmp_path / "killed.log").read_text()
        done_before = {p.name for p in stats_dir.glob("*.stats.json")}
        assert 2 <= len(done_before) < UNITS, f"the kill should land mid-run:\n{killed_log[-3000:]}"
        assert not (root / "manifest.json").exists()
        mtimes = {p.name: p.stat().st_mtime_ns for p in stats_dir.glob("*.stats.json")}

        rerun = subprocess.run(_cmd(build, tok), env=_env(ray_tmp), capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    finally:
        stop_cluster(str(ray_tmp))
        shutil.rmtree(ray_tmp, ignore_errors=True)

    todo = UNITS - len(done_before)
    output = rerun.stdout + rerun.stderr  # the job reports through logging; the CLI decides the stream
    assert f"{UNITS} sentence shards, {len(done_before)} already tokenized, {todo} to do" in output
    after = {p.name: p.stat().st_mtime_ns for p in stats_dir.glob("*.stats.json")}
    assert len(after) == UNITS
    assert {n: after[n] for n in mtimes} == mtimes  # finished units were not redone
    redone = {n for n in after if n not in mtimes}
    assert len(redone) == todo and all(after[n] > max(mtimes.values()) for n in redone)
    assert f"tokenize: {todo}/{todo} shards (100%)" in rerun.stderr  # the progress counted the redone units only
    assert f"tokenize: {UNITS}/{UNITS} units" in output

    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]  # no temporaries left behind
    shards = _files(root, "photos/part-*.parquet")
    assert len(shards) == UNITS
    assert shards == _files(ref_root, "photos/part-*.parquet")  # byte-identical to the uninterrupted run
    assert _files(root, "audit/photos/part-*.parquet") == _files(ref_root, "audit/photos/part-*.parquet")
