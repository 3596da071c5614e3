"""`uvd plan` estimates from measured unit costs; `uvd stats` draws the report."""
import cv2
import pytest

import uvd.cli.plan_cmd as plan_cmd
from uvd.config import BuildConfig
from uvd.plan import plan_units
from uvd.runner import build
from uvd.cli.stats_cmd import main as stats_main


def _cfg(root, out):
    return BuildConfig.model_validate({"out": str(out), "datasets": [
        {"name": "photos", "source": "image_folder", "source_args": {"root": str(root), "labels": False},
         "builder": "single", "items_per_unit": 5}]})


def test_plan_measures_a_unit_and_scales_to_all_items(odd_folder, tmp_path):
    cfg = _cfg(odd_folder, tmp_path / "out")
    units = plan_units(cfg)
    assert sum(plan_cmd.items_in(u.payload) for u in units) == 15  # 7 photos + 8 odd files
    costs = plan_cmd.measure(cfg, units, calibrate=None)
    assert costs["photos"].items == 5 and costs["photos"].seconds > 0
    text = plan_cmd.report(cfg, units, costs, gpu_tflops=989, mfu=0.4)
    assert "TOTAL" in text and "GPU-hours" in text and "assumptions:" in text


def test_plan_calibrated_from_a_finished_build_matches_it(odd_folder, tmp_path, monkeypatch):
    cfg = _cfg(odd_folder, tmp_path / "out")
    summary = build(cfg, use_ray=False)
    monkeypatch.setattr(plan_cmd, "run_unit", lambda *a, **k: pytest.fail("calibrated plans build nothing"))
    units = plan_units(cfg)
    costs = plan_cmd.measure(cfg, units, calibrate=str(tmp_path / "out"))
    assert costs["photos"].items == summary.inputs == 15
    assert costs["photos"].sentences == summary.sentences
    line = next(l for l in plan_cmd.report(cfg, units, costs, 989, 0.4).splitlines() if l.startswith("photos"))
    assert line.split()[2:5] == ["3", "15", str(summary.sentences)]  # units, items, sentences


def test_stats_plot(odd_folder, tmp_path, capsys):
    build(_cfg(odd_folder, tmp_path / "out"), use_ray=False)
    png = tmp_path / "report.png"
    assert stats_main([str(tmp_path / "out"), "--plot", str(png)]) == 0
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 500 and img.shape[1] > 1000
    assert img.std() > 20  # bars and text, not a blank canvas
    assert "failures by reason: decode 2, empty 1, too_large 1" in capsys.readouterr().out


def test_plan_reports_datasets_whose_data_is_missing(odd_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"""datasets:
  - {{name: here, source: image_folder, source_args: {{root: {odd_folder}, labels: false}}}}
  - {{name: not_yet, source: image_folder, source_args: {{root: ${{UVD_T_NOPE:-/no/such/folder}}}}}}
""")
    assert plan_cmd.main([str(config)]) == 0
    out = capsys.readouterr().out
    assert "not_yet" in out and "NOT PLANNED" in out and "/no/such/folder" in out
    assert next(l for l in out.splitlines() if l.startswith("here")).split()[3] == "15"


def test_plan_columns_never_run_together_and_reasons_are_plain_words(odd_folder, tmp_path, capsys):
    cfg = _cfg(odd_folder, tmp_path / "out")
    units = plan_units(cfg)
    # tiny MiB and CPU-h (0.4 MiB beside 0.000192 h once printed as "0.40.000192")
    costs = {"photos": plan_cmd.Cost(items=15, seconds=0.0461, sentences=15, images=15, bytes=28_000)}
    line = next(l for l in plan_cmd.report(cfg, units, costs, 989, 0.4).splitlines() if l.startswith("photos"))
    fields = line.split()
    assert fields[2:7] == ["3", "15", "15", "15", "3,855"] and float(fields[7]) == 0.0 and float(fields[8]) > 0
    config = tmp_path / "c.yaml"
    config.write_text("datasets:\n  - {name: gone, source: image_folder, source_args: {root: /no/such/folder}}\n")
    assert plan_cmd.main([str(config)]) == 0
    reason = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("gone"))
    assert "NOT PLANNED" in reason and "/no/such/folder" in reason
    assert "Value error" not in reason and "(top)" not in reason
