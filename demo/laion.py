"""Demo step for LAION: generated photos served from loopback, Parquet metadata with bad rows."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from demo.image_server import ImageServer, bad_cases, generated_photos


def laion_inputs(workdir: Path, stack: contextlib.ExitStack) -> list[dict[str, Any]]:
    """Demo step: 40 generated photos served from loopback, LAION-style Parquet metadata with bad rows."""
    photos = generated_photos(40, seed=7, sizes=(200, 900))
    server = ImageServer({f"{i:03d}.jpg": p for i, p in enumerate(photos)}, stall_s=3.0)
    stack.callback(server.close)
    urls = [server.url(f"/img/{i:03d}.jpg") for i in range(len(photos))]
    urls[5] = server.url("/flaky/005.jpg")  # 500 first: retried
    urls[6] = server.url("/to/006.jpg")  # one redirect: followed
    urls.insert(2, urls[1])  # a duplicate URL in the same unit
    urls += list(bad_cases(server).values())
    n = len(urls)
    punsafe = [0.01] * n
    punsafe[3] = 0.97  # dropped by max_punsafe without being downloaded
    table = pa.table({
        "URL": urls,
        "TEXT": [f"caption {i} (never stored)" for i in range(n)],
        "WIDTH": pa.array([None] * n, pa.float64()),
        "HEIGHT": pa.array([None] * n, pa.float64()),
        "punsafe": punsafe,
    })
    path = workdir / "laion" / "metadata.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=16)
    return [{
        "name": "laion", "source": "laion", "builder": "single", "items_per_unit": 20,
        "source_args": {
            "metadata": str(path),
            "download": {"allow_loopback": [server.base.split("//", 1)[1]],  # this server's host:port only
                         "connect_timeout_s": 1, "read_timeout_s": 1, "total_timeout_s": 5, "retries": 1, "backoff_s": 0.05, "max_bytes": 4 << 20, "concurrency": 8},
            "filters": {"max_punsafe": 0.5, "min_side": 64},
        },
    }]
