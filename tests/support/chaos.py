"""The chaos drill's pieces (tests/test_chaos.py): its inputs, running and killing `uvd build`, damaging
an output, and the checks after each round (validate, every input item once, shards equal to a reference).

Inputs are small and in real formats: an img2dataset Parquet output (downloaded JPEGs, a row
img2dataset failed to download, bytes that are no image, the same photo under two URLs so the
build-wide content dedup finds a pair), an image folder with a damaged file, and tiny generated units.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from demo.image_server import generated_photos
from tests.support.cluster import REPO, cluster_pids, stop_cluster

# What a user would run (the same command each time); the drill adds only environment variables.
PYTHON = sys.executable
INPUT_ITEMS = {"web": 10, "photos": 5, "tiny": 4}  # known from make_inputs, independently of any build
KILL_POINTS = ("before_stats", "before_publish", "during_dedup", "during_manifest")  # uvd/faults.py callers


# ---------------------------------------------------------------- inputs

def make_inputs(root: Path, seed: int = 7) -> Path:
    """Write the drill's inputs under `root` and its build config (8 units: web 4, photos 2, tiny 2);
    returns the config's path."""
    photos = generated_photos(8, seed=3, sizes=(40, 72), quality=85)
    web = root / "web"
    web.mkdir(parents=True)
    for f in range(2):  # two img2dataset shards of 5 rows: units of 3 rows → 4 units
        rows = []
        for r in range(5):
            url = f"http://img.example/{f}/{r}.jpg"
            status, err, data = "success", None, photos[(f * 5 + r) % len(photos)]
            if (f, r) == (0, 3):
                status, err, data = "failed_to_download", "HTTP Error 404: Not Found", None
            elif (f, r) == (1, 1):
                data = b"<html>not an image</html>"  # a decode failure in the audit
            elif (f, r) == (1, 4):
                data = photos[0]  # as rows (0, 0) and (1, 3): a duplicate across units and within one
            rows.append({"url": url, "caption": "c", "key": f"{f:05d}{r:04d}", "status": status,
                         "error_message": err, "original_width": 64, "original_height": 64, "jpg": data})
        pq.write_table(pa.Table.from_pylist(rows), web / f"{f:05d}.parquet")
    folder = root / "photos"
    for i, cls in enumerate(["cat", "cat", "dog", "dog", "dog"]):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        (folder / cls / f"{i}.jpg").write_bytes(photos[i][: 200] if i == 3 else photos[i + 3])  # 3.jpg is cut short
    cfg = {"seed": seed, "run": {"max_retries": 3},
           "datasets": [
               {"name": "web", "source": "img2dataset", "source_args": {"root": str(web)}, "items_per_unit": 3},
               {"name": "photos", "source": "image_folder", "source_args": {"root": str(folder)}, "items_per_unit": 3},
               {"name": "tiny", "source": "tests.support.tiny_units:TinySource",
                "source_args": {"units": 2, "items": 2}},
           ]}
    path = root / "chaos.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def with_settings(config: Path, dest: Path, settings: dict[str, Any]) -> Path:
    """The same build with other operational settings (`run:` keys, or top-level ones such as
    `row_group_bytes`): nothing may be rebuilt for them."""
    cfg = yaml.safe_load(config.read_text())
    for k, v in settings.items():
        if k in ("workers", "max_in_flight", "max_retries", "unit_timeout_s"):
            cfg["run"] = {**cfg.get("run", {}), k: v}
        else:
            cfg[k] = v
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def with_units_of(config: Path, dest: Path, dataset: str, items_per_unit: int) -> Path:
    """The same build with another unit size for one dataset: another plan (a recipe change)."""
    cfg = yaml.safe_load(config.read_text())
    for ds in cfg["datasets"]:
        if ds["name"] == dataset:
            ds["items_per_unit"] = items_per_unit
    dest.write_text(yaml.safe_dump(cfg))
    return dest


# ---------------------------------------------------------------- running builds

def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    env.pop("UVD_FAULTS", None)
    env.update(extra or {})
    return env


class _Forked:
    """A `uvd build` run in a child of the drill's fork server, with Popen's poll/wait/pid/returncode.

    The fork server (multiprocessing "forkserver", started once, no threads) has uvd and the
    drill's plug-ins imported; each run is a fresh fork of it that calls the CLI's main() as
    `python -m uvd build …` would, in its own session, its output in a file. It saves the
    interpreter start and imports (about 1 s of CPU) per run; the build itself is the real one.
    """

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["tests.support.chaos_child"])
        from tests.support.chaos_child import run_cli

        self._p = ctx.Process(target=run_cli, args=(argv, env, str(log), str(REPO)), daemon=False)
        self._p.start()
        self.pid = self._p.pid

    @property
    def returncode(self) -> int | None:
        return self._p.exitcode

    def poll(self) -> int | None:
        return self._p.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._p.join(timeout)
        if self._p.exitcode is None:
            raise subprocess.TimeoutExpired("uvd build", timeout or 0)
        return self._p.exitcode


@dataclass
class Run:
    """One `uvd build` process; its output goes to a file (a pipe nobody reads would block it)."""

    proc: Any  # subprocess.Popen or _Forked
    log: Path
    ray_tmp: str | None = None

    @property
    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 2500) -> str:
        return self.text[-n:]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait(timeout=30)

    def kill(self) -> bool:
        """SIGKILL the build and everything it started; True if it was still running."""
        alive = self.proc.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # a fork killed before its setsid() has no group yet
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.ray_tmp:  # a local Ray's workers live in another session: find them by their temp dir
            stop_cluster(self.ray_tmp)
        return alive

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()
            self.proc.wait(timeout=30)
        elif self.ray_tmp and cluster_pids(self.ray_tmp):
            stop_cluster(self.ray_tmp)
        if self.ray_tmp:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)


def start_build(config: Path, out: str, log: Path, faults: str = "", seed: int = 0, ray: bool = False,
                extra_env: dict[str, str] | None = None, fork: bool = True, args: tuple[str, ...] = ()) -> Run:
    """`uvd build CONFIG --out OUT --no-ray` (or with a local Ray of 2 workers, always a new interpreter);
    `fork`: run it as a fork of the drill's fork server instead of a new interpreter."""
    extra = {**(extra_env or {})}
    if faults:
        extra.update({"UVD_FAULTS": faults, "UVD_FAULTS_SEED": str(seed)})
    argv = ["build", str(config), "--out", out, *args]
    ray_tmp = None
    if ray:
        ray_tmp = tempfile.mkdtemp(prefix="uvdch-", dir="/tmp")  # short: Ray's socket paths
        extra["RAY_TMPDIR"] = ray_tmp
        argv += ["--workers", "2"]
    else:
        argv.append("--no-ray")
    if fork and not ray:
        return Run(_Forked(argv, env_for(extra), log), log)
    with open(log, "wb") as f:
        proc = subprocess.Popen([PYTHON, "-m", "uvd", *argv], env=env_for(extra), stdout=f, stderr=subprocess.STDOUT,
                                cwd=REPO, start_new_session=True)  # its own process group: a kill takes all of it
    return Run(proc, log, ray_tmp)


def wait_for(pred: Any, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(poll)
    return False


def unit_task_pids(ray_tmp: str) -> list[int]:
    """Ray workers of this build's local Ray that are running a unit (Ray renames them `ray::<task>`)."""
    ours = set(cluster_pids(ray_tmp))
    found = []
    for pid in ours:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_run_unit_task"):
                found.append(pid)
    return sorted(found)


# ---------------------------------------------------------------- the output: files, damage, checks

def fs_of(out: str) -> tuple[Any, str]:
    import fsspec
    from fsspec.core import url_to_fs

    if out.startswith("s3://"):
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        return fs, out[len("s3://"):]
    return url_to_fs(out)


def data_files(out: str) -> dict[str, str]:
    """Relative path → content digest of every file under sentences/ and audit/, from one listing each
    (stats files: their names only, they carry timings). On S3 the digest is the ETag, the MD5 of an
    object written in one PUT (the drill's files are small), so comparing reads no object."""
    fs, root = fs_of(out)
    s3 = out.startswith("s3://")
    found: dict[str, str] = {}
    for kind in ("sentences", "audit"):
        fs.invalidate_cache(f"{root}/{kind}")
        try:
            listing = fs.find(f"{root}/{kind}", detail=True)
        except FileNotFoundError:
            continue
        for name, info in listing.items():
            rel = name[len(root.rstrip("/")) + 1:]
            if rel.endswith(".stats.json"):
                found[rel] = "(stats)"
            elif s3:
                found[rel] = "md5:" + str(info.get("ETag", "")).strip('"')
            else:
                found[rel] = digest(Path(name).read_bytes())
    return found


def digest(data: bytes) -> str:
    """What data_files records of a local file: comparable with a listing of the same bytes on S3."""
    return f"sha256:{hashlib.sha256(data).hexdigest()} md5:{hashlib.md5(data).hexdigest()}"


def same(found: str, ref: str) -> bool:
    return found == ref or (found.startswith("md5:") and found in ref.split())


def copy_output(src: Path, out: str) -> None:
    """A finished output, copied whole to `out` (a user's finished build, as the start of a round)."""
    fs, root = fs_of(out)
    if not out.startswith("s3://"):
        shutil.copytree(src, out)
        return
    for p in sorted(src.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{root}/{p.relative_to(src).as_posix()}", p.read_bytes())


DAMAGE = ("delete_shard", "truncate_shard", "delete_audit", "delete_stats", "delete_manifest")


def damage(out: str, kind: str, rng: random.Random) -> str:
    """Harm a finished output as a user or a failing disk might; returns what was done."""
    fs, root = fs_of(out)
    if kind == "delete_manifest":
        try:
            fs.rm(f"{root}/manifest.json")
        except FileNotFoundError:  # an earlier damage of the round took it already
            return "manifest.json (already gone)"
        return "deleted manifest.json"
    folder = "audit" if kind == "delete_audit" else "sentences"
    fs.invalidate_cache(f"{root}/{folder}")
    suffix = ".stats.json" if kind == "delete_stats" else ".parquet"
    names = sorted(n for n in fs.find(f"{root}/{folder}", detail=False) if n.endswith(suffix) and ".tmp-" not in n)
    name = rng.choice(names)
    rel = name[len(root.rstrip("/")) + 1:]
    if kind == "truncate_shard":
        data = fs.cat_file(name)
        fs.pipe_file(name, data[: len(data) // 2])
        return f"truncated {rel} to {len(data) // 2} of {len(data)} bytes"
    fs.rm(name)
    return f"deleted {rel}"


def _audit_items(out: str, known: dict[str, list[str]] | None = None,
                 same_as_known: set[str] | None = None) -> tuple[Counter, dict[str, list[str]], list[str]]:
    """(dataset, item_id) → how often the audit shards of the manifest's done units name it; the item ids
    per audit shard; problems. Shards in `same_as_known` (bytes equal to a shard whose ids are `known`)
    are not read again."""
    from uvd.manifest import read_units, resolve
    from uvd.shards import read_table

    seen: Counter[tuple[str, str]] = Counter()
    per_shard: dict[str, list[str]] = {}
    problems = []
    for row in read_units(out):
        if row["status"] != "done":
            continue
        path = row["audit_path"]
        if known is not None and same_as_known is not None and path in same_as_known and path in known:
            ids = known[path]
        else:
            try:
                ids = read_table(resolve(out, path), columns=["item_id"]).column(0).to_pylist()
            except Exception as err:  # a missing or damaged audit shard is a finding
                problems.append(f"audit of {row['dataset']}/{row['unit']} unreadable: {type(err).__name__}: {err}")
                continue
        per_shard[path] = ids
        seen.update((row["dataset"], i) for i in ids)
    return seen, per_shard, problems


@dataclass
class Reference:
    """What the undisturbed build wrote: the drill's yardstick."""

    root: str  # where it is (a local folder)
    files: dict[str, str]
    items: Counter
    audit_ids: dict[str, list[str]]
    duplicates: dict[str, str]
    totals: dict[str, Any]


def reference_of(out: str) -> Reference:
    from uvd.dedup import duplicates_of
    from uvd.manifest import read_manifest

    items, per_shard, problems = _audit_items(out)
    assert not problems, problems
    return Reference(out, data_files(out), items, per_shard, dict(duplicates_of(out)), _totals(read_manifest(out)))


def _totals(manifest: dict[str, Any] | None) -> dict[str, Any]:
    t = (manifest or {}).get("totals", {})
    return {k: t.get(k) for k in ("inputs", "ok", "failed", "sentences", "images", "units", "units_done", "failures")}


def leftovers(out: str) -> list[str]:
    """Files a finished build should not have left anywhere in its output: temporaries, its lease."""
    fs, root = fs_of(out)
    fs.invalidate_cache(root)
    names = [n[len(root.rstrip("/")) + 1:] for n in fs.find(root, detail=False)]
    return sorted(n for n in names if ".tmp-" in n or n == "_lease.json")


def _unit_of(rel: str) -> str:
    """"<dataset>/<unit>" of `sentences|audit/<dataset>/part-<unit>.<suffix>`."""
    _, ds, name = rel.split("/", 2)
    return f"{ds}/{name[len('part-'):].split('.', 1)[0]}"


def how_parquet_differs(out: str, ref: Reference, rel: str) -> str:
    """For a report: whether the rows or only the file metadata differ, and which metadata keys."""
    from uvd.shards import open_parquet
    from uvd.storage import join

    try:
        mine, theirs = open_parquet(join(out, rel)), open_parquet(join(ref.root, rel))
        rows_equal = mine.read().equals(theirs.read())
        a, b = mine.schema_arrow.metadata or {}, theirs.schema_arrow.metadata or {}
        keys = sorted(k.decode() for k in set(a) | set(b) if a.get(k) != b.get(k))
    except Exception as err:  # damaged: that is the answer
        return f"unreadable: {type(err).__name__}: {str(err)[:120]}"
    return ("same rows" if rows_equal else "OTHER ROWS") + (f"; file metadata differs in {', '.join(keys)}" if keys else "")


def check_output(out: str, ref: Reference, outside_ok: bool = False) -> list[str]:
    """Everything the drill demands of a finished output, as a list of problems (empty: all good).

    `outside_ok`: files of units of an earlier plan may remain if the manifest names them as outside
    the plan (validate warns of them; a `--prune` build removes them)."""
    from uvd import dedup
    from uvd.manifest import read_manifest
    from uvd.validate import validate

    dedup._table.cache_clear()  # a name reused by another round must be read afresh
    problems = [f"validate: {p}" for p in validate(out, use_ray=False)]
    problems += [f"{name}: left in a finished output" for name in leftovers(out) if name == "_lease.json"]
    outside = set((read_manifest(out) or {}).get("outside_plan", {}).get("first", [])) if outside_ok else set()
    files = data_files(out)
    for rel in sorted(set(ref.files) | set(files)):
        if rel not in files:
            problems.append(f"{rel}: missing (the undisturbed build has it)")
        elif rel not in ref.files:
            if _unit_of(rel) not in outside:
                problems.append(f"{rel}: not in the undisturbed build" + (" nor named outside the plan" if outside_ok else ""))
        elif not same(files[rel], ref.files[rel]):
            problems.append(f"{rel}: bytes differ from the undisturbed build ({how_parquet_differs(out, ref, rel)})")
    unchanged = {rel for rel in files if rel in ref.files and same(files[rel], ref.files[rel])}
    items, _, audit_problems = _audit_items(out, ref.audit_ids, unchanged)
    problems += audit_problems
    twice = sorted(k for k, n in items.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} input items audited more than once, e.g. {twice[:3]}")
    lost = sorted(set(ref.items) - set(items))
    if lost:
        problems.append(f"{len(lost)} input items in no audit shard, e.g. {lost[:3]}")
    extra = sorted(set(items) - set(ref.items))
    if extra:
        problems.append(f"{len(extra)} audited items the undisturbed build does not have, e.g. {extra[:3]}")
    dups = dict(dedup.duplicates_of(out))
    if dups != ref.duplicates:
        problems.append(f"content dedup table {dups} != the undisturbed build's {ref.duplicates}")
    totals = _totals(read_manifest(out))
    if totals != ref.totals:
        problems.append(f"manifest totals {totals} != the undisturbed build's {ref.totals}")
    return problems


# ---------------------------------------------------------------- bookkeeping

def cpu_seconds() -> float:
    """CPU time of this process, its finished children and the fork server's finished runs (Ray's
    daemons, which leave the process tree, are not counted): what the drill costs a CI machine."""
    import multiprocessing.forkserver
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + ru.ru_utime + ru.ru_stime
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    if pid:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return total


@dataclass
class Tally:
    """What the drill did, for its one summary line."""

    rounds: Counter = field(default_factory=Counter)  # by where: local / s3
    kills: Counter = field(default_factory=Counter)  # by kind
    refused: int = 0
    damaged: Counter = field(default_factory=Counter)
    settings_changed: int = 0
    detours: int = 0  # builds of another plan in between (their units end outside the plan, then pruned)
    stray_temps: int = 0  # temporaries left outside sentences/ and audit/ (garbage, not data)
    reruns: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        where = ", ".join(f"{n} {k}" for k, n in sorted(self.rounds.items()))
        kills = ", ".join(f"{n} {k}" for k, n in sorted(self.kills.items()))
        damaged = ", ".join(f"{n} {k}" for k, n in sorted(self.damaged.items()))
        verdict = ("all equal to the undisturbed build" if not self.failures
                   else f"{len(self.failures)} rounds NOT equal to the undisturbed build")
        return (f"chaos: {sum(self.rounds.values())} rounds ({where}), {sum(self.kills.values())} kills ({kills}), "
                f"{self.refused} concurrent builds refused, {sum(self.damaged.values())} files damaged ({damaged}), "
                f"{self.settings_changed} setting changes, {self.detours} plan detours, {self.reruns} reruns, "
                f"{self.stray_temps} stray temporaries, {verdict}")
