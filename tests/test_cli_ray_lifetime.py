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
