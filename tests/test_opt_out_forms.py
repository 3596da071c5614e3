"""Opt-out headers as servers and proxies really send them (issue #22.7): valued directives are
directives, not user agents; proxy-merged groups split at each user agent; TDMRep's
`tdm-reservation: 1` and `noml` are honoured by default and can be turned off."""
from __future__ import annotations

import pytest

from demo.image_server import generated_photos
from sources.download import Downloader, DownloadOptions, FetchError
from sources.opt_out import OptOutOptions, directives_by_agent, disallowing_directive
from tests.support.header_server import HeaderServer
from tests.support.laion import FAST_DOWNLOAD


@pytest.mark.parametrize("values, refused", [
    (["max-image-preview:large, noai"], True),
    (["max-image-preview: large, noai"], True),
    (["unavailable_after: 25 Jun 2010 15:00:00 PST, noimageai"], True),
    (["unavailable_after: Friday, 25-Jun-2010 15:00:00 GMT, noai"], True),  # an RFC 850 date has its own comma
    (["unavailable_after: Friday, 25-Jun-2010 15:00:00 GMT"], False),
    (["max-snippet:-1,noindex"], True),
    (["max-snippet:-1, max-image-preview:large, max-video-preview:-1"], False),
    (["googlebot: noindex, uvd: noai"], True),  # two headers a proxy merged into one
    (["googlebot: noindex, otherbot: noai"], False),
    (["uvd: noai, googlebot: noindex"], True),
    (["googlebot: max-snippet:-1, noai"], False),  # still googlebot's group
    (["img2dataset: max-image-preview:large, noimageai"], True),
    (["noml"], True),
    (["*: noml"], True),
    (["NOINDEX , NoFollow"], True),
    (["all", "max-image-preview:large"], False),
])
def test_real_header_forms(values, refused):
    assert (disallowing_directive(values, OptOutOptions()) is not None) is refused


def test_groups_are_read_as_google_documents_them():
    assert list(directives_by_agent("max-image-preview:large, googlebot: noindex, nofollow, uvd: noai")) == [
        (None, "max-image-preview"), ("googlebot", "noindex"), ("googlebot", "nofollow"), ("uvd", "noai")]


ROUTES = {
    "/preview-noai.jpg": [("X-Robots-Tag", "max-image-preview:large, noai")],
    "/merged.jpg": [("X-Robots-Tag", "googlebot: noindex, uvd: noai")],
    "/noml.jpg": [("X-Robots-Tag", "noml")],
    "/tdm.jpg": [("tdm-reservation", "1"), ("tdm-policy", "https://example.org/policy.json")],
    "/tdm-0.jpg": [("tdm-reservation", "0")],
    "/preview.jpg": [("X-Robots-Tag", "max-image-preview:large")],
}


@pytest.fixture(scope="module")
def server():
    photo = generated_photos(1, seed=6, sizes=(64, 64))[0]
    with HeaderServer({p: (photo, h) for p, h in ROUTES.items()}) as srv:
        yield srv


def _outcomes(server: HeaderServer, opt_out: dict) -> dict[str, str]:
    port = server.httpd.server_address[1]
    options = {**FAST_DOWNLOAD, "allow_loopback": [f"127.0.0.1:{port}"], "opt_out": opt_out}
    out = {}
    with Downloader(DownloadOptions(**options)) as dl:
        for path in ROUTES:
            try:
                dl.fetch(server.url(path))
                out[path] = "ok"
            except FetchError as err:
                out[path] = str(err)
    return out


def test_downloads_honour_every_form_by_default(server):
    got = _outcomes(server, {})
    assert got == {
        "/preview-noai.jpg": "opt_out: X-Robots-Tag: max-image-preview:large, noai",
        "/merged.jpg": "opt_out: X-Robots-Tag: googlebot: noindex, uvd: noai",
        "/noml.jpg": "opt_out: X-Robots-Tag: noml",
        "/tdm.jpg": "opt_out: tdm-reservation: 1",
        "/tdm-0.jpg": "ok",
        "/preview.jpg": "ok",
    }


def test_tdm_and_noml_can_be_turned_off_and_so_can_everything(server):
    got = _outcomes(server, {"tdm_reservation": False, "directives": ["noai", "noimageai", "noindex", "noimageindex"]})
    assert got["/tdm.jpg"] == got["/noml.jpg"] == "ok"
    assert got["/merged.jpg"].startswith("opt_out:")
    assert set(_outcomes(server, {"enabled": False}).values()) == {"ok"}
