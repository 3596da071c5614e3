"""The chaos drill (issue #22, Deliver 9): kill the driver and Ray workers at random points, start a
second build on the same output, damage committed files, change operational settings; after each
round rerun the same command until it exits 0 and demand: `uvd validate` finds nothing, every input
item is in exactly one audit row, every shard is byte-identical to an undisturbed build.

Rounds alternate between a local folder and moto S3 on loopback (one server for the module). The
first disturbance of each round comes from a fixed rotation (so every kind of kill, a concurrent
build, damage, a settings change and a plan detour happen on both stores); a second one, half the
time, is drawn at random.
Each round prints its seed; `UVD_CHAOS_SEED` changes the base seed, `UVD_CHAOS_ROUNDS` the number of
rounds, `UVD_CHAOS_ONLY=<round seed>` replays one round (its timing-based kills land where they land).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import chaos
from tests.support.counting_s3 import counting_moto
from uvd import faults

BASE_SEED = int(os.environ.get("UVD_CHAOS_SEED", "2212"))
ROUNDS = int(os.environ.get("UVD_CHAOS_ROUNDS", "24"))
RAY_ROUNDS = (5, 18)  # round indexes that run with Ray and kill a worker mid-unit (one local, one s3)
RUN_TIMEOUT = 120.0  # seconds for one `uvd build` of the drill's inputs (a few seconds, even loaded)
MAX_RERUNS = 3


@pytest.fixture(scope="module")
def s3() -> Iterator[None]:
    with counting_moto(bucket="uvd"):
        yield


@dataclass
class Round:
    index: int
    seed: int
    where: str  # "local" or "s3"
    out: str
    config: Path
    work: Path
    tally: chaos.Tally
    rng: random.Random = field(init=False)
    steps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    state: str = "empty"  # empty / partial (killed, damaged) / finished
    runs: int = 0
    detoured: bool = False  # another plan was built in between: its units may lie outside the plan

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def log(self) -> Path:
        self.runs += 1
        return self.work / f"run{self.runs}.log"

    def finished_ok(self, run: chaos.Run, rc: int, what: str) -> None:
        """A run that was not disturbed must exit 0 without a traceback."""
        if rc != 0:
            self.problems.append(f"{what} exited {rc}:\n{run.tail()}")
        elif "Traceback (most recent call last)" in run.text and not run.ray_tmp:
            self.problems.append(f"{what} exited 0 but printed a traceback:\n{run.tail()}")
        else:
            self.state = "finished"


# ---------------------------------------------------------------- disturbances

def kill_at_random_time(r: Round) -> None:
    run = chaos.start_build(r.config, r.out, r.log())
    try:
        # the kill lands after planning, somewhere in the units, the dedup pass or the manifest
        chaos.wait_for(lambda: "plan:" in run.text or run.proc.poll() is not None, RUN_TIMEOUT)
        time.sleep(r.rng.uniform(0.0, 0.8))
        killed = run.kill()
        run.wait(30)
    finally:
        run.cleanup()
    if killed:
        r.tally.kills["driver@random"] += 1
        r.steps.append("kill driver at a random time")
        r.state = "partial"
    else:
        r.steps.append("kill driver at a random time (it had finished)")
        r.finished_ok(run, run.proc.returncode, "the build the drill meant to kill")


def kill_at_point(r: Round, point: str = "") -> None:
    point = point or r.rng.choice(chaos.KILL_POINTS)
    # the points' calls per build: one per unit; several per unit; two in the dedup pass; one
    nth = {"before_stats": r.rng.randint(1, 6), "before_publish": r.rng.randint(1, 12),
           "during_dedup": r.rng.randint(1, 2)}.get(point, 1)
    run = chaos.start_build(r.config, r.out, r.log(), faults=f"{point}:@{nth}", seed=r.seed)
    try:
        rc = run.wait(RUN_TIMEOUT)
    finally:
        run.cleanup()
    if f"SIGKILL at {point}" in run.text:
        if rc != -9:
            r.problems.append(f"injected kill at {point} but the build exited {rc}")
        r.tally.kills[f"driver@{point}"] += 1
        r.steps.append(f"kill driver at {point} #{nth}")
        r.state = "partial"
    else:  # the run did less than the point needs (e.g. nothing left to build): a plain rerun
        r.steps.append(f"kill driver at {point} #{nth} (not reached)")
        r.finished_ok(run, rc, f"the build meant to die at {point}")


def concurrent_build(r: Round) -> None:
    """B starts while A stands between a shard and its stats file: B must refuse, A must finish."""
    go = r.work / f"go{r.runs}"  # A stands at its first stats file until the drill creates this
    first = chaos.start_build(r.config, r.out, r.log(), faults=f"before_stats:wait={go}@1", seed=r.seed)
    second = None
    try:
        paused = chaos.wait_for(lambda: "waiting at" in first.text or first.proc.poll() is not None, RUN_TIMEOUT)
        if not paused or first.proc.poll() is not None:
            r.steps.append("concurrent build (the first build had nothing to build)")
            r.finished_ok(first, first.wait(RUN_TIMEOUT), "the first build")
            return
        second = chaos.start_build(r.config, r.out, r.log())
        rc2 = second.wait(RUN_TIMEOUT)
        go.touch()
        rc1 = first.wait(RUN_TIMEOUT)
    finally:
        go.touch()
        first.cleanup()
        if second is not None:
            second.cleanup()
    r.steps.append("concurrent second build")
    if rc2 == 0:
        r.problems.append("a second build on the same output was not refused (it exited 0)")
    else:
        text = second.text
        if str(first.proc.pid) not in text or "--takeover" not in text:
            r.problems.append(f"the refusal does not name the holder (pid {first.proc.pid}) and --takeover:\n"
                              f"{second.tail(1500)}")
        else:
            r.tally.refused += 1
    r.finished_ok(first, rc1, "the first of two concurrent builds")


def damage_output(r: Round) -> None:
    """Lose or harm three files at once (the next three kinds of damage in turn, so a drill sees all)."""
    for _ in range(3):
        kind = chaos.DAMAGE[sum(r.tally.damaged.values()) % len(chaos.DAMAGE)]
        r.steps.append(chaos.damage(r.out, kind, r.rng))
        r.tally.damaged[kind] += 1
    r.state = "partial"


def change_settings(r: Round) -> None:
    """Operational settings only: a finished build must then build nothing."""
    settings = r.rng.choice([{"max_retries": 5}, {"max_retries": 0}, {"max_in_flight": 2},
                             {"unit_timeout_s": 900.0}, {"workers": 1}, {"row_group_bytes": 1 << 16}])
    r.config = chaos.with_settings(r.config, r.work / f"settings{r.runs}.yaml", settings)
    r.tally.settings_changed += 1
    r.steps.append(f"change settings {settings}")
    if r.state == "finished":
        run = chaos.start_build(r.config, r.out, r.log())
        try:
            rc = run.wait(RUN_TIMEOUT)
        finally:
            run.cleanup()
        r.finished_ok(run, rc, "the rerun after a settings change")
        if rc == 0 and " 0 built" not in run.text:
            r.problems.append(f"an operational settings change rebuilt units:\n{run.tail(800)}")


def recipe_detour(r: Round) -> None:
    """Build another plan (smaller units for `web`) into the output, perhaps killed, then go back to
    the config: the other plan's units must be reported outside the plan and never read as data."""
    other = chaos.with_units_of(r.config, r.work / f"detour{r.runs}.yaml", "web", 2)
    point = r.rng.choice(["", "", "before_stats:@3", "during_dedup:@1"])
    run = chaos.start_build(other, r.out, r.log(), faults=point, seed=r.seed)
    try:
        rc = run.wait(RUN_TIMEOUT)
    finally:
        run.cleanup()
    r.detoured = True
    r.tally.detours += 1
    killed = "SIGKILL at" in run.text
    if killed:
        r.tally.kills[f"driver@{point.split(':')[0]}"] += 1
    elif rc != 0:
        r.problems.append(f"the build of another plan exited {rc}:\n{run.tail()}")
    r.steps.append("build another plan (web in units of 2)" + (f", killed at {point}" if killed else ""))
    r.state = "partial"


def kill_ray_worker(r: Round) -> None:
    """A Ray build whose fresh workers each pause 1 s between their first shard and its stats file:
    one of them is SIGKILLed there; Ray retries the unit, the build must still succeed."""
    run = chaos.start_build(r.config, r.out, r.log(), faults="before_stats:sleep=1@1", seed=r.seed, ray=True)
    try:
        found = chaos.wait_for(lambda: chaos.unit_task_pids(run.ray_tmp) or run.proc.poll() is not None,
                               RUN_TIMEOUT, poll=0.1)
        pids = chaos.unit_task_pids(run.ray_tmp) if found else []
        if pids:
            time.sleep(r.rng.uniform(0.2, 0.8))
            victim = r.rng.choice(pids)
            try:
                os.kill(victim, 9)
                r.tally.kills["ray_worker"] += 1
                r.steps.append(f"kill Ray worker {victim} mid-unit")
            except ProcessLookupError:
                r.steps.append("kill Ray worker (it had finished its unit)")
        else:
            r.steps.append("kill Ray worker (none was running a unit)")
        rc = run.wait(RUN_TIMEOUT * 2)
    finally:
        run.cleanup()
    r.finished_ok(run, rc, "the Ray build whose worker was killed")


# ---------------------------------------------------------------- one round

def rerun_until_ok(r: Round) -> None:
    for attempt in range(1, MAX_RERUNS + 1):
        run = chaos.start_build(r.config, r.out, r.log())
        try:
            rc = run.wait(RUN_TIMEOUT)
        finally:
            run.cleanup()
        r.tally.reruns += 1
        if rc == 0:
            if attempt > 1:
                r.steps.append(f"rerun needed {attempt} tries")
            r.state = "finished"
            return
        last = f"rerun {attempt} exited {rc}:\n{run.tail(1500)}"
    r.problems.append(f"no rerun exited 0 in {MAX_RERUNS} tries; {last}")


# The first disturbance of the non-Ray rounds, in turn (an odd count: each lands on local and on S3);
# a second one, half the time, is drawn at random.
SCHEDULE = [
    ("empty", lambda r: kill_at_point(r, "before_stats")),
    ("empty", lambda r: kill_at_point(r, "during_dedup")),
    ("empty", concurrent_build),
    ("empty", lambda r: kill_at_point(r, "during_manifest")),
    ("finished", damage_output),
    ("empty", lambda r: kill_at_point(r, "before_publish")),
    ("finished", change_settings),
    ("empty", recipe_detour),
    ("empty", kill_at_random_time),
]


def play(r: Round, reference: Path, ref: chaos.Reference, turn: int) -> None:
    if r.index in RAY_ROUNDS:
        kill_ray_worker(r)
    else:
        start, first = SCHEDULE[turn % len(SCHEDULE)]
        if start == "finished":  # a user's finished build as the start
            chaos.copy_output(reference, r.out)
            r.state = "finished"
            r.steps.append("start from a finished build")
        first(r)
        if r.rng.random() < (0.5 if r.where == "local" else 0.3):  # S3 rounds cost twice as much
            if r.state == "finished":
                step = r.rng.choice([damage_output, change_settings, kill_at_point, recipe_detour])
            else:
                step = r.rng.choice([kill_at_random_time, kill_at_point, concurrent_build, change_settings,
                                     recipe_detour])
            step(r)
    if r.state != "finished":
        rerun_until_ok(r)
    if r.state != "finished":
        return
    if r.detoured:  # leftovers of the other plan: named, not counted; then removed as a user would
        r.problems += [f"before --prune: {p}" for p in chaos.check_output(r.out, ref, outside_ok=True)]
        run = chaos.start_build(r.config, r.out, r.log(), args=("--prune",))
        try:
            rc = run.wait(RUN_TIMEOUT)
        finally:
            run.cleanup()
        if rc != 0:
            r.problems.append(f"`uvd build --prune` exited {rc}:\n{run.tail()}")
        r.steps.append("--prune")
    r.problems += chaos.check_output(r.out, ref)
    r.tally.stray_temps += len([n for n in chaos.leftovers(r.out) if ".tmp-" in n])


@pytest.mark.slow  # two of its rounds start a local Ray
def test_chaos_drill(tmp_path: Path, s3: None) -> None:
    t_start, cpu_start, own_start = time.monotonic(), chaos.cpu_seconds(), time.process_time()
    config = chaos.make_inputs(tmp_path / "inputs")
    reference = tmp_path / "reference"
    # the yardstick is built as a user builds: `python -m uvd build --no-ray` in a new interpreter
    run = chaos.start_build(config, str(reference), tmp_path / "reference.log", fork=False)
    try:
        assert run.wait(RUN_TIMEOUT) == 0, run.tail()
    finally:
        run.cleanup()
    ref = chaos.reference_of(str(reference))
    assert len(ref.items) == sum(chaos.INPUT_ITEMS.values())  # every input item is in the audit once
    assert {ds for ds, _ in ref.items} == set(chaos.INPUT_ITEMS)
    assert ref.duplicates and ref.totals["failed"] >= 3  # the dedup pass and the audit have something to say
    assert chaos.check_output(str(reference), ref) == []

    tally = chaos.Tally()
    only = os.environ.get("UVD_CHAOS_ONLY")
    for i in range(ROUNDS):
        seed = BASE_SEED * 1000 + i
        if only and int(only) != seed:
            continue
        turn = sum(j not in RAY_ROUNDS for j in range(i))  # this round's place in SCHEDULE
        if i in RAY_ROUNDS:
            where = "local" if RAY_ROUNDS.index(i) % 2 == 0 else "s3"
        else:
            where = "local" if turn % 2 == 0 else "s3"
        work = tmp_path / f"round{i:02d}"
        work.mkdir()
        out = str(work / "out") if where == "local" else f"s3://uvd/chaos-{BASE_SEED}/round{i:02d}"
        r = Round(i, seed, where, out, config, work, tally)
        t0 = time.monotonic()
        play(r, reference, ref, turn)
        tally.rounds[where] += 1
        verdict = "ok" if not r.problems else f"FAILED ({len(r.problems)} problems)"
        print(f"chaos round {i:2d} seed {seed} {where:5s} {time.monotonic() - t0:5.1f}s: "
              f"{'; '.join(r.steps)} → {verdict}", flush=True)
        if r.problems:
            tally.failures.append(f"round {i} (seed {seed}, {where}; {'; '.join(r.steps)}):\n  "
                                  + "\n  ".join(p[:3000] for p in r.problems[:8]))
        if where == "local":
            shutil.rmtree(work / "out", ignore_errors=True)
    print(tally.line(), flush=True)
    print(f"chaos: {time.monotonic() - t_start:.0f} s wall, {chaos.cpu_seconds() - cpu_start:.0f} s CPU, of which "
          f"{time.process_time() - own_start:.0f} s in the drill's process (checks, moto) and the rest in the builds "
          "(Ray's daemons not counted)", flush=True)
    assert not tally.failures, "\n".join(tally.failures)
    if not only and ROUNDS >= 20:
        assert sum(tally.rounds.values()) >= 20 and tally.rounds["local"] and tally.rounds["s3"]
        # the drill really did what it claims: every kind of kill, a refusal, damage
        assert {f"driver@{p}" for p in chaos.KILL_POINTS} | {"ray_worker"} <= set(tally.kills), tally.line()
        assert tally.refused >= 2 and set(tally.damaged) == set(chaos.DAMAGE) and tally.settings_changed >= 2, \
            tally.line()
        assert tally.detours >= 2, tally.line()


# ---------------------------------------------------------------- the kill switch itself (fast)

def test_faults_spec_parsing() -> None:
    assert faults.parse("before_stats:0.3, during_manifest:@2,x:sleep=1.5@1,y:sleep=0.2,z:wait=/tmp/a b@1") == {
        "before_stats": faults.Fault("kill", probability=0.3), "during_manifest": faults.Fault("kill", at=2),
        "x": faults.Fault("sleep", seconds=1.5, at=1), "y": faults.Fault("sleep", seconds=0.2),
        "z": faults.Fault("wait", path="/tmp/a b", at=1)}
    assert faults.parse("w:wait=/tmp/go") == {"w": faults.Fault("wait", path="/tmp/go")}
    for bad in ("before_stats", "p:2", "p:@x", "p:sleep=", ":0.1", "p:wait=", "p:wait=/x@y"):
        with pytest.raises(ValueError, match="UVD_FAULTS"):
            faults.parse(bad)


def test_faults_do_nothing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.maybe_die("before_stats")  # unset: nothing
    monkeypatch.setenv(faults.ENV, "elsewhere:@1,before_stats:0")
    for _ in range(50):
        faults.maybe_die("before_stats")  # probability 0, and another point named
    monkeypatch.setenv(faults.ENV, "before_stats:sleep=0.01@2")
    t0 = time.monotonic()
    faults.maybe_die("before_stats")
    faults.maybe_die("before_stats")
    assert time.monotonic() - t0 >= 0.01


def test_faults_wait_holds_the_process_until_the_file_exists(tmp_path: Path) -> None:
    go = tmp_path / "go"
    r = subprocess.Popen([sys.executable, "-c", "from uvd import faults; faults.maybe_die('p'); print('went on')"],
                         env=chaos.env_for({faults.ENV: f"p:wait={go}@1"}), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert chaos.wait_for(lambda: r.poll() is not None, 1.0) is False  # standing at the point
        go.touch()
        out, err = r.communicate(timeout=60)
    finally:
        r.kill()
    assert r.returncode == 0 and out.strip() == "went on" and f"waiting at p for {go}" in err


def _run_points(spec: str, hits: int, seed: str = "0") -> "subprocess.CompletedProcess[str]":
    code = ("from uvd import faults\n"
            f"for i in range({hits}):\n"
            "    print(i, flush=True)\n"
            "    faults.maybe_die('p')\n")
    env = chaos.env_for({faults.ENV: spec, faults.SEED_ENV: seed})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_faults_kill_the_process_at_the_nth_hit_or_by_seeded_chance() -> None:
    r = _run_points("p:@3", 10)
    assert r.returncode == -signal.SIGKILL
    assert r.stdout.split() == ["0", "1", "2"]  # died at the 3rd hit, nothing after it ran
    assert "uvd.faults: SIGKILL at p" in r.stderr
    a, b, c = _run_points("p:0.3", 40, "5"), _run_points("p:0.3", 40, "5"), _run_points("p:0.3", 40, "6")
    assert a.returncode == b.returncode == -signal.SIGKILL and a.stdout == b.stdout  # same seed, same point
    assert 0 < len(a.stdout.split()) < 40
    assert c.stdout != a.stdout or c.returncode != a.returncode  # another seed, other draws
