"""Arrow schemas of the shards (schema version 1, README "What it writes") and their file metadata."""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

import uvd

SCHEMA_VERSION = "1"
_dict = pa.dictionary(pa.int32(), pa.string())

IDENTITY_FIELDS = [
    pa.field("sentence_id", pa.string(), nullable=False),
    pa.field("source", _dict, nullable=False),
    pa.field("task", _dict, nullable=False),
    pa.field("layout", _dict, nullable=False),
    pa.field("num_images", pa.int16(), nullable=False),
]

SENTENCE_SCHEMA = pa.schema(
    IDENTITY_FIELDS
    + [
        pa.field("images", pa.list_(pa.binary()), nullable=False),
        pa.field("meta", pa.string(), nullable=False),
    ]
)

TOKEN_SCHEMA = pa.schema(IDENTITY_FIELDS + [pa.field("tokens", pa.list_(pa.uint16()), nullable=False)])

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("status", _dict, nullable=False),  # "ok" or "failed"
        pa.field("reason", _dict, nullable=True),  # the kind of failure: decode, too_large, http, ...
        pa.field("error", pa.string(), nullable=True),  # the full message
    ]
)


def file_metadata(kind: str, extra: dict[str, Any] | None = None) -> dict[bytes, bytes]:
    """Parquet key-value metadata: what the file is and what made it. No timestamps (determinism)."""
    meta = {"uvd.kind": kind, "uvd.schema_version": SCHEMA_VERSION, "uvd.version": uvd.__version__}
    for k, v in (extra or {}).items():
        meta[f"uvd.{k}"] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return {k.encode(): v.encode() for k, v in meta.items()}


def with_metadata(schema: pa.Schema, kind: str, extra: dict[str, Any] | None = None) -> pa.Schema:
    return schema.with_metadata(file_metadata(kind, extra))


def read_metadata(schema: pa.Schema) -> dict[str, str]:
    raw = schema.metadata or {}
    return {k.decode()[4:]: v.decode() for k, v in raw.items() if k.startswith(b"uvd.")}
