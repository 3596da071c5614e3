"""`uvd <command>` stops the Ray it started (instead of Ray's exit hook, which sleeps first)
and leaves alone a Ray that was running before it."""
import sys
import types

import pytest

from uvd import cli


class FakeRay(types.ModuleType):
    def __init__(self, running: bool) -> None:
        super().__init__("ray")
        self.running, self.shutdowns = running, 0

    def is_initialized(self) -> bool:
        return self.running

    def init(self) -> None:
        self.running = True

    def shutdown(self) -> None:
        self.running, self.shutdowns = False, self.shutdowns + 1


@pytest.fixture
def command(monkeypatch):
    """A command whose main() starts Ray (as `uvd build` does) and returns `code`."""
    mod = types.ModuleType("fake_cmd")
    mod.code = 0
    mod.main = lambda argv: (sys.modules["ray"].init(), mod.code)[1]
    monkeypatch.setitem(sys.modules, "fake_cmd", mod)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_cmd", "a command that starts Ray"))
    return mod


@pytest.mark.parametrize("code", [0, 1])
def test_a_command_stops_the_ray_it_started(monkeypatch, command, code):
    ray = FakeRay(running=False)
    monkeypatch.setitem(sys.modules, "ray", ray)
    command.code = code
    assert cli.main(["fake"]) == code
    assert ray.shutdowns == 1 and not ray.running


def test_a_ray_running_before_the_command_is_left_running(monkeypatch, command):
    ray = FakeRay(running=True)
    monkeypatch.setitem(sys.modules, "ray", ray)
    assert cli.main(["fake"]) == 0
    assert ray.shutdowns == 0 and ray.running


def test_stop_ray_ends_a_local_ray_and_its_daemons(tmp_path):
    """The real thing, in its own process: after stop_ray no child of the driver is left
    (the autoscaler monitor, killed first, included) and Ray reports itself stopped."""
    import os
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import ray
        from uvd.procs import child_pids
        from uvd.runner import init_ray, stop_ray
        init_ray(1)
        assert ray.get(ray.remote(lambda: 7).remote()) == 7
        before = child_pids()
        stop_ray()
        def running(pid):
            try:
                return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] not in "ZX"
            except OSError:
                return False
        alive = [p for p in before if running(p)]
        print("CHILDREN", len(before), "ALIVE", len(alive), "INIT", ray.is_initialized())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RAY_ADDRESS": ""})
    line = next((x for x in out.stdout.splitlines() if x.startswith("CHILDREN")), None)
    assert line is not None, out.stderr[-2000:]
    _, n, _, alive, _, init = line.split()
    assert int(n) >= 3 and alive == "0" and init == "False", line
