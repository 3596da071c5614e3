"""benchmarks/gpu_suite.py --smoke: the GPU suite's code runs on CPU with tiny configs and writes its table.

Run as the GPU machine would run it: without the packages that machine lacks (Ray, decord, av, …).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABSENT_ON_GPU_MACHINE = ["ray", "decord", "av", "pycocotools", "httpx", "moto"]


def test_gpu_suite_smoke_writes_every_part(tmp_path: Path) -> None:
    out = tmp_path / "suite.md"
    script = ("import runpy, sys\n"
              f"for m in {ABSENT_ON_GPU_MACHINE!r}: sys.modules[m] = None\n"
              f"sys.argv = ['gpu_suite.py', '--smoke', '--out', {str(out)!r}]\n"
              "runpy.run_path('benchmarks/gpu_suite.py', run_name='__main__')\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = out.read_text()
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    parts = [r[0].strip("| ") for r in rows]
    assert not [r for r in rows if r[1] in ("error", "skipped")], table
    assert parts.count("a") == 8 and parts.count("b") == 1 and parts.count("c") == 2 and parts.count("d") == 1, table
    assert "images/s" in table and "% of peak" in table and "token agreement" in table
    assert "cudnn.benchmark on" in table
    # the encoder's GPU path eager and compiled, and the layouts, are measured side by side
    assert "bf16 weights, contiguous, compiled" in table and "bf16 weights, contiguous, eager" in table
    assert "channels-last" in table and "compiled, CUDA graphs" in table
    assert "(Ray unavailable)" in table  # part b says how it ran
    assert "tokens/s; MFU" in table and "torch.compile on" in table and "torch.compile off" in table
    assert "async save blocks" in table


def test_vqgan_variants_smoke_measures_every_variant(tmp_path: Path) -> None:
    out = tmp_path / "variants.md"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "benchmarks/gpu_vqgan_variants.py", "--smoke", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ") and "| batch |" not in line]
    assert len(rows) == 9, rows  # 2 precisions × 2 layouts × eager/compiled, and the default with CUDA graphs
    assert {r[0].strip("| ") for r in rows} >= {"bf16 weights, contiguous, compiled", "autocast bf16, channels-last, eager"}
    errors = [float(r[4]) for r in rows]  # latent error vs fp32: bf16 is close, not exact
    assert all(0.0 < e < 10.0 for e in errors), errors


def test_device_run_script_smoke_writes_both_tables(tmp_path: Path) -> None:
    # The one command a GPU session runs on the device (benchmarks/gpu_device_run.sh), here on CPU.
    env = dict(os.environ, SMOKE="1", OUT=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run(["bash", "benchmarks/gpu_device_run.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "gpu_suite rc 0" in proc.stdout and "variants rc 0" in proc.stdout, \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    suite = (tmp_path / "gpu_suite.md").read_text()
    assert {line.split(" | ")[0] for line in suite.splitlines() if line.startswith("| ") and "| part" not in line} \
        == {"| a", "| b", "| c", "| d"}, suite  # PARTS a,d,b,c: compiled training (C) is left out
    variants = (tmp_path / "variants.md").read_text()
    assert variants.count("| bf16 weights, contiguous, compiled, CUDA graphs |") == 2, variants
