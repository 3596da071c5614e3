"""One deadline per download (issue #22.4): a server that trickles a byte every 0.25 s — each read
short, the whole endless — fails that item with `timeout` within total_timeout_s + 1 s, in the
response head as in the body, and the other items of the unit are not held up.

The bound is correctness, not speed: without the deadline the same fetch lasts until the server
stops trickling (30 s here)."""
from __future__ import annotations

import time

import pytest

from demo.image_server import generated_photos
from sources.download import Downloader, DownloadOptions, FetchError
from sources.laion_metadata import url_id
from tests.support.laion import FAST_DOWNLOAD, audit_rows, config, run_all_units, write_metadata
from tests.support.trickle_server import TrickleServer

TOTAL_S = 1.5
# read_timeout_s (0.6) is longer than the trickle's gap (0.25): only the total deadline can end it.
OPTIONS = {**FAST_DOWNLOAD, "total_timeout_s": TOTAL_S}


@pytest.fixture(scope="module")
def server():
    photos = generated_photos(3, seed=5, sizes=(200, 300))
    with TrickleServer({f"{i}.jpg": p for i, p in enumerate(photos)}) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/headers", "/body"])
def test_a_trickling_response_times_out_within_the_total_deadline(server, path):
    with Downloader(DownloadOptions(**{**OPTIONS, "allow_loopback": [f"127.0.0.1:{server.port}"]})) as dl:
        t0 = time.monotonic()
        with pytest.raises(FetchError) as err:
            dl.fetch(server.url(path))
        elapsed = time.monotonic() - t0
    assert err.value.kind == "timeout", str(err.value)
    assert elapsed < TOTAL_S + 1.0, elapsed
    assert "attempts" not in str(err.value)  # a deadline is not retried: it would only multiply the wait


def test_a_fast_response_after_a_timed_out_one_is_not_cut_short(server):
    """The deadline is per download: a pooled or fresh connection afterwards gets a full one."""
    with Downloader(DownloadOptions(**{**OPTIONS, "concurrency": 1})) as dl:
        with pytest.raises(FetchError):
            dl.fetch(server.url("/body"))
        assert dl.fetch(server.url("/img/0.jpg")).data == server.images["0.jpg"]


def test_trickling_items_fail_alone_and_the_unit_finishes(server, tmp_path):
    good = [server.url(f"/img/{i}.jpg") for i in range(3)]
    urls = [good[0], server.url("/headers"), good[1], server.url("/body"), good[2]]
    meta = write_metadata(tmp_path / "meta.parquet", {"url": urls})
    cfg = config(tmp_path / "out", "laion", {"metadata": str(meta), "download": OPTIONS})
    t0 = time.monotonic()
    stats = run_all_units(cfg)
    elapsed = time.monotonic() - t0
    rows = {r["item_id"]: r for r in audit_rows(cfg, len(stats))}
    assert len(stats) == 1 and len(rows) == len(urls)
    for url in good:
        assert rows[url_id(url)]["status"] == "ok", rows[url_id(url)]["error"]
    for path in ("/headers", "/body"):
        assert rows[url_id(server.url(path))]["reason"] == "timeout", rows[url_id(server.url(path))]["error"]
    # Both trickles run at once beside the good rows: the unit ends about one deadline in, not 30 s.
    assert elapsed < TOTAL_S + 5.0, elapsed
