"""X-Robots-Tag opt-out: an image whose server says `noai` (or the like) ends `opt_out`, not in a shard."""
from __future__ import annotations

import pytest

from tests.support.laion import FAST_DOWNLOAD, audit_rows, config, run_all_units, sentences, write_metadata
from sources.laion_metadata import url_id
from demo.image_server import generated_photos
from sources.opt_out import OptOutOptions, disallowing_directive
from support.header_server import HeaderServer


@pytest.mark.parametrize("values, refused", [
    (["noai"], True),
    (["NoImageAI"], True),
    (["noindex, nofollow"], True),
    (["nofollow", "noimageindex"], True),  # a second header counts
    (["*: noai"], True),
    (["uvd: noai"], True),
    (["img2dataset: noimageai"], True),
    (["otherbot: noai"], False),  # scoped to another crawler
    (["nofollow, noarchive"], False),
    (["unavailable_after: 25 Jun 2010 15:00:00 PST"], False),
    (["noindex, unavailable_after: 25 Jun 2010"], True),  # a colon inside an unscoped list
    ([], False),
])
def test_directive_rule(values, refused):
    assert (disallowing_directive(values, OptOutOptions()) is not None) is refused


def test_configurable_list_and_switch():
    assert disallowing_directive(["noai"], OptOutOptions(enabled=False)) is None
    assert disallowing_directive(["noai"], OptOutOptions(directives=["noml"])) is None
    assert disallowing_directive(["mybot: noml"], OptOutOptions(directives=["noml"], user_agent_tokens=["mybot"]))


ROUTES = {  # path → extra headers
    "/plain.jpg": [],
    "/noai.jpg": [("X-Robots-Tag", "noai")],
    "/two-headers.jpg": [("X-Robots-Tag", "nofollow"), ("X-Robots-Tag", "uvd: noimageai")],
    "/other-bot.jpg": [("X-Robots-Tag", "otherbot: noai, noindex")],
    "/list.jpg": [("X-Robots-Tag", "noarchive, NOINDEX")],
}


@pytest.mark.parametrize("enabled", [True, False])
def test_opted_out_urls_end_opt_out_and_never_reach_a_shard(tmp_path, enabled):
    photos = generated_photos(len(ROUTES), seed=4, sizes=(200, 300))
    routes = {p: (photo, h) for (p, h), photo in zip(ROUTES.items(), photos)}
    with HeaderServer(routes) as srv:
        urls = [srv.url(p) for p in ROUTES]
        meta = write_metadata(tmp_path / "meta.parquet", {"url": urls})
        download = {**FAST_DOWNLOAD, **({} if enabled else {"opt_out": {"enabled": False}})}
        cfg = config(tmp_path / "out", "laion", {"metadata": str(meta), "download": download})
        stats = run_all_units(cfg)
    rows = {r["item_id"]: r for r in audit_rows(cfg, len(stats))}
    ids = {p: url_id(u) for p, u in zip(ROUTES, urls)}
    refused = {"/noai.jpg", "/two-headers.jpg", "/list.jpg"} if enabled else set()
    for path, item_id in ids.items():
        if path in refused:
            assert rows[item_id]["reason"] == "opt_out", path
            assert "X-Robots-Tag" in rows[item_id]["error"]
        else:
            assert rows[item_id]["status"] == "ok", (path, rows[item_id]["error"])
    assert len(sentences(cfg, len(stats))) == len(ROUTES) - len(refused)
