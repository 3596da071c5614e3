"""Hostile LAION metadata (issue #23): a bad file is reported by name and audited as `bad_file`
while the good ones build; none readable is exit 2; a bad row fails that row only and keeps its
place. Inputs from tests/support/hostile_corpus.py; the table is in docs/hostile_inputs.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import hostile_corpus as hc
from uvd.cli import build_cmd
from uvd.errors import ConfigError

NO_RETRY = {"retries": 0}


def _by_row(audit: dict[str, dict[str, Any]], stem: str) -> dict[int, str]:
    """Row index → kind for rows whose id names their position (`row@<file>:<i>`); the others
    (ids from their URL) under -1, -2, …"""
    out: dict[int, str] = {}
    for item_id, r in sorted(audit.items()):
        if item_id.startswith(f"row@{stem}:"):
            out[int(item_id.rsplit(":", 1)[1])] = hc.kind(r)
        elif item_id.startswith("url-"):
            out[-1 - len([k for k in out if k < 0])] = hc.kind(r)
    return out


def test_bad_parquet_among_three_is_audited_and_the_rest_built(tmp_path: Path) -> None:
    files, expect = hc.laion_parquets(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "laion",
                                              {"metadata": [str(f) for f in files], "download": NO_RETRY})
    assert summary.succeeded and not summary.failed_units
    bad = {k: hc.kind(r) for k, r in audit.items() if k.startswith("bad_file:")}
    assert bad == expect
    assert "Parquet file size is 0 bytes" in audit["bad_file:b-empty.parquet"]["error"]
    assert len(audit) == 2 + 3  # the good file's three rows each have theirs
    assert problems == []


def test_fifo_metadata_file_is_a_bad_file_without_blocking(tmp_path: Path) -> None:
    files, expect = hc.laion_fifo(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "laion",
                                              {"metadata": [str(f) for f in files], "download": NO_RETRY}, seconds=60)
    assert summary.succeeded and {k: hc.kind(r) for k, r in audit.items() if k.startswith("bad_file:")} == expect
    assert "not a regular file" in audit["bad_file:b-fifo.csv"]["error"] and len(audit) == 1 + 2
    assert problems == []


def test_csv_bad_rows_keep_their_place_and_do_not_swallow_the_next(tmp_path: Path) -> None:
    files, rows = hc.laion_csv(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "laion",
                                              {"metadata": [str(f) for f in files], "download": NO_RETRY})
    assert summary.succeeded
    assert hc.kind(audit.pop("bad_file:b-empty.csv")) == "bad_file"
    assert len(audit) == len(rows)  # 7 rows in, 7 audited: the open quote swallowed nothing
    got = _by_row(audit, "a.csv")
    assert {i: k for i, k in got.items() if i >= 0} == {i: k for i, k in rows.items() if k == "metadata"}
    assert sorted(k for i, k in got.items() if i < 0) == ["blocked"] * 3  # refused by the address guard
    assert "quote" in audit["row@a.csv:4"]["error"] and "UTF-8" in audit["row@a.csv:3"]["error"]
    assert problems == []


def test_jsonl_first_line_not_an_object_and_deep_nesting(tmp_path: Path) -> None:
    path, rows = hc.laion_jsonl(tmp_path / "in")
    summary, audit, problems = hc.build_audit(tmp_path / "out", "laion", {"metadata": str(path), "download": NO_RETRY},
                                              items_per_unit=2)
    assert summary.succeeded and len(audit) == len(rows)
    got = _by_row(audit, "meta.jsonl")
    assert {i: k for i, k in got.items() if i >= 0} == {i: k for i, k in rows.items() if k == "metadata"}
    assert problems == []


def test_nothing_readable_is_exit_2_naming_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files, _ = hc.laion_parquets(tmp_path / "in")
    bad = [str(f) for f in files[1:]]  # the 0-byte and the truncated one
    cfg = tmp_path / "build.yaml"
    cfg.write_text(json.dumps({"out": str(tmp_path / "out"), "datasets": [
        {"name": "web", "source": "laion", "source_args": {"metadata": bad}, "builder": "single"}]}))
    assert build_cmd.main([str(cfg), "--no-ray"]) == 2
    err = capsys.readouterr().err
    assert "b-empty.parquet" in err and "c-truncated.parquet" in err and "Traceback" not in err


def test_truncated_tar_alone_is_a_config_error(tmp_path: Path) -> None:
    hc.img2dataset_tars(tmp_path / "in")
    (tmp_path / "in" / "00000.tar").unlink()
    with pytest.raises(ConfigError, match="00001.tar"):
        hc.build_audit(tmp_path / "out", "img2dataset", {"root": str(tmp_path / "in")})
