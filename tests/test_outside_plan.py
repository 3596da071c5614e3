"""Only the plan counts (issue #22, Deliver 1): units on disk outside the current plan are reported
by the build and by validate (as a warning), never counted, and `--prune` removes them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.counting_s3 import counting_moto
from tests.support.tiny_units import tiny_config
from uvd import storage
from uvd.cli.build_cmd import main as build_main
from uvd.cli.validate_cmd import main as validate_main
from uvd.config import BuildConfig
from uvd.manifest import done_units, read_manifest
from uvd.runner import build
from uvd.validate import validate

LEFT = ["tiny0/00004", "tiny0/00005"]


def _build(out: str, units: int, **kw: Any) -> Any:
    return build(BuildConfig.model_validate(tiny_config(out, units, items=2)), use_ray=False, **kw)


def _unit_files(out: str) -> list[str]:
    names = [f"sentences/{n}" for n in storage.list_files(f"{out}/sentences")]
    return sorted(names + [f"audit/{n}" for n in storage.list_files(f"{out}/audit")])


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_units_of_an_earlier_plan_are_reported_not_counted_and_pruned_on_request(backend, tmp_path):
    def run(out: str) -> None:
        assert _build(out, 6).built == 6
        smaller = _build(out, 4)  # another plan (4 units, another recipe): 00004 and 00005 stay on disk
        assert smaller.built == 4 and smaller.outside_plan == LEFT
        assert "outside the plan: 2 units on disk not in this plan, not counted (tiny0/00004, tiny0/00005)" \
            in smaller.report() and "--prune" in smaller.report()
        man = read_manifest(out)
        assert man["outside_plan"] == {"units": 2, "first": LEFT}
        assert man["totals"]["units"] == man["totals"]["units_done"] == 4 and man["totals"]["sentences"] == 8
        done = done_units(out, ["dataset", "unit"])
        assert done.to_pylist() == [{"dataset": "tiny0", "unit": f"0000{i}"} for i in range(4)]
        warnings: list[str] = []
        assert validate(out, warnings=warnings) == []
        assert [w.split(" is ")[0] for w in warnings] == [f"unit {u}" for u in LEFT]
        assert any("part-00005" in n for n in _unit_files(out))
        pruned = _build(out, 4, prune=True)
        assert pruned.built == 0 and pruned.pruned == 2 and pruned.outside_plan == []
        assert "pruned: removed the files of 2 units outside the plan" in pruned.report()
        assert not any("part-00004" in n or "part-00005" in n for n in _unit_files(out))
        assert "outside_plan" not in read_manifest(out)
        warnings.clear()
        assert validate(out, warnings=warnings) == [] and warnings == []

    if backend == "local":
        run(str(tmp_path / "out"))
    else:
        with counting_moto():
            run("s3://uvd/outside")


def test_the_cli_warns_about_units_outside_the_plan_and_prunes_them(tmp_path, capsys):
    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    for units in (6, 4):
        config.write_text(yaml.safe_dump(tiny_config(str(out), units, items=2)))
        assert build_main([str(config), "--no-ray"]) == 0
    assert "outside the plan: 2 units" in capsys.readouterr().out
    assert validate_main([str(out), "--no-ray"]) == 0
    printed = capsys.readouterr().out
    assert "WARNING: unit tiny0/00004 is outside the plan" in printed and "OK: 4 units, 8 sentences" in printed
    assert build_main([str(config), "--no-ray", "--prune"]) == 0
    assert "pruned: removed the files of 2 units" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "sentences" / "tiny0").iterdir()) == [
        f"part-0000{i}.{ext}" for i in range(4) for ext in ("parquet", "stats.json")]
    assert sorted(p.name for p in (out / "audit" / "tiny0").iterdir()) == [f"part-0000{i}.parquet" for i in range(4)]
    assert validate_main([str(out), "--no-ray"]) == 0 and "WARNING" not in capsys.readouterr().out


def test_a_stats_file_left_without_its_plan_is_never_read(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    _build(out, 6)
    marker = Path(out) / "sentences" / "tiny0" / "part-00005.stats.json"
    marker.write_text("{not json")  # whatever it holds, nothing reads it as data
    reads: list[str] = []
    real = storage.read_json
    monkeypatch.setattr("uvd.engine.read_json", lambda url: reads.append(url) or real(url))
    smaller = _build(out, 4)
    assert smaller.outside_plan == LEFT and not any("00004" in r or "00005" in r for r in reads)
    assert json.loads((Path(out) / "manifest.json").read_text())["totals"]["units"] == 4
