"""Check a build output against its manifest: files, sha256, schema, images, inputs = ok + failed."""
from __future__ import annotations

from typing import Any

from uvd import codec, dedup
from uvd.layout import manifest as manifest_url
from uvd.schema import AUDIT_SCHEMA, SENTENCE_SCHEMA
from uvd.shards import iter_rows, open_parquet, read_table
from uvd.storage import exists, glob, join, read_json, sha256_of


def _schema_problem(url: str, expected: Any) -> str | None:
    got = open_parquet(url).schema_arrow.remove_metadata()
    if not got.equals(expected.remove_metadata()):
        return f"{url}: schema differs from v1: {got}"
    return None


def _check_sentences(url: str, size: int, seen_ids: dict[str, str], problems: list[str], decode: bool) -> int:
    rows = 0
    for row in iter_rows(url):
        rows += 1
        sid = row["sentence_id"]
        if sid in seen_ids:
            problems.append(f"{url}: duplicate sentence_id {sid} (also in {seen_ids[sid]})")
        seen_ids[sid] = url
        if row["num_images"] != len(row["images"]) or not row["images"]:
            problems.append(f"{url}: sentence {sid}: num_images {row['num_images']} != {len(row['images'])}")
        if decode:
            for i, data in enumerate(row["images"]):
                try:
                    shape = codec.decode(data).shape
                except Exception as err:
                    problems.append(f"{url}: sentence {sid} image {i} does not decode: {err}")
                    continue
                if shape != (size, size, 3):
                    problems.append(f"{url}: sentence {sid} image {i} has shape {shape}, expected {size}x{size}x3")
    return rows


def _check_shard(url: str, kind: str, size: int, seen_ids: dict[str, str], problems: list[str],
                 decode: bool) -> int | None:
    expected = SENTENCE_SCHEMA if kind == "sentences" else AUDIT_SCHEMA
    if (prob := _schema_problem(url, expected)) is not None:
        problems.append(prob)
        return None
    if kind == "sentences":
        return _check_sentences(url, size, seen_ids, problems, decode)
    audit = read_table(url).to_pylist()
    bad = [r for r in audit if r["status"] not in ("ok", "failed") or (r["status"] == "failed") != bool(r["error"])]
    if bad:
        problems.append(f"{url}: {len(bad)} audit rows neither ok nor failed-with-reason")
    return len(audit)


def validate(out: str, decode_images: bool = True) -> list[str]:
    out = out.rstrip("/")
    problems: list[str] = []
    if not exists(manifest_url(out)):
        return [f"{out}: no manifest.json (the build has not finished)"]
    manifest = read_json(manifest_url(out))
    size = manifest["config"]["image"]["size"]
    for u in manifest["units"]:
        if u["status"] != "done":
            problems.append(f"unit {u['dataset']}/{u['unit']} not done: {u.get('error')}")
    listed = set()
    seen_ids: dict[str, str] = {}
    for shard in manifest["shards"]:
        url = join(out, shard["path"])
        listed.add(shard["path"])
        if not exists(url):
            problems.append(f"{shard['path']}: listed in the manifest but missing")
            continue
        sha, nbytes = sha256_of(url)
        if (sha, nbytes) != (shard["sha256"], shard["bytes"]):
            problems.append(f"{shard['path']}: sha256/bytes differ from the manifest")
        try:
            rows = _check_shard(url, shard["kind"], size, seen_ids, problems, decode_images)
        except Exception as err:  # a damaged file is a finding, not a crash of the validator
            problems.append(f"{shard['path']}: unreadable: {type(err).__name__}: {err}")
            continue
        if rows is not None and rows != shard["rows"]:
            problems.append(f"{shard['path']}: {rows} rows, manifest says {shard['rows']}")
    for u in manifest["units"]:
        if u["status"] == "done" and u["inputs"] != u["ok"] + u["failed"]:
            problems.append(f"unit {u['dataset']}/{u['unit']}: inputs {u['inputs']} != ok + failed")
    problems += dedup.check(out, seen_ids)  # the content dedup table names sentences of this build
    for kind in ("sentences", "audit"):
        for url in glob(out, f"{kind}/*/part-*"):
            rel = url[len(out) + 1:] if url.startswith(out) else url.split(f"/{kind}/", 1)[-1]
            if ".tmp-" in url:
                problems.append(f"{rel}: leftover temporary file")
            elif url.endswith(".parquet") and not any(url.endswith(p) for p in listed):
                problems.append(f"{rel}: shard not in the manifest (uncommitted)")
    return problems
