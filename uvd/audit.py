"""The audit: every input item ends as `ok` or `failed` with its reason. inputs = ok + failed."""
from __future__ import annotations

from collections import Counter
from typing import Any

from uvd.records import Failed, reason_kind
from uvd.schema import AUDIT_SCHEMA
from uvd.shards import ShardInfo, ShardWriter


class AuditLog:
    """Item statuses of one unit, in the order items were read."""

    def __init__(self) -> None:
        self._order: list[str] = []
        self._error: dict[str, str | None] = {}  # None: read, not yet used or failed
        self._used: set[str] = set()

    def seen(self, item_id: str) -> None:
        if item_id not in self._error:
            self._order.append(item_id)
            self._error[item_id] = None

    def fail(self, f: Failed) -> None:
        self.seen(f.item_id)
        if self._error[f.item_id] is None:  # the first reason is the one that counts
            self._error[f.item_id] = f.reason

    def used(self, item_ids: list[str]) -> None:
        self._used.update(item_ids)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for item_id in self._order:
            err = self._error[item_id]
            if err is None and item_id not in self._used:
                err = "unused: the builder put this item in no sentence"
            rows.append({"item_id": item_id, "status": "failed" if err else "ok",
                         "reason": reason_kind(err) if err else None, "error": err})
        return rows

    def counts(self) -> dict[str, Any]:
        rows = self.rows()
        failures = Counter(r["reason"] for r in rows if r["status"] == "failed")
        ok = sum(r["status"] == "ok" for r in rows)
        return {"inputs": len(rows), "ok": ok, "failed": len(rows) - ok, "failures": dict(sorted(failures.items()))}

    def write(self, url: str, meta: dict[str, Any]) -> ShardInfo:
        writer = ShardWriter(url, AUDIT_SCHEMA, "audit", meta)
        for row in self.rows():
            writer.add(row)
        return writer.close()
