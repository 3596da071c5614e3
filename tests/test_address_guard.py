"""The address guard (issue #23.6): every spelling of a private, loopback or unspecified address is
refused as what it wraps, port 0 is refused, and `allow_loopback` names endpoints, so a redirect
to another local port stays refused.

Non-loopback forms are only ever judged (classify/vet), never connected to; the downloader
tests use loopback servers and a spy on every TCP connection."""
from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from sources.address_guard import AddressRefused, Endpoint, classify, vet
from sources.download import Downloader, DownloadOptions, FetchError
from tests.support.header_server import HeaderServer
from tests.support.laion import FAST_DOWNLOAD

METADATA = "169.254.169.254"


@pytest.mark.parametrize("address, verdict", [
    ("8.8.8.8", "public"),
    ("2606:4700::1111", "public"),
    ("10.1.2.3", "private"),
    (METADATA, "private"),
    ("100.64.0.1", "private"),  # CGNAT
    ("fd00::1", "private"),  # ULA
    ("fe80::1%eth0", "private"),  # link-local with a zone id
    ("127.0.0.1", "loopback"),
    ("127.9.9.9", "loopback"),
    ("::1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),  # 0.0.0.0/8: "this network", connects locally
    ("::", "unspecified"),
    # IPv6 forms that carry an IPv4 address are judged by it
    ("::ffff:10.1.2.3", "private"),  # IPv4-mapped
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::ffff:8.8.8.8", "public"),
    ("::ffff:0:a9fe:a9fe", "private"),  # IPv4-translated (SIIT) 169.254.169.254
    ("::ffff:0:7f00:1", "loopback"),
    ("::a9fe:a9fe", "private"),  # IPv4-compatible 169.254.169.254
    ("::7f00:1", "loopback"),
    ("::808:808", "private"),  # IPv4-compatible is deprecated: never public, even around a public address
    ("64:ff9b::a9fe:a9fe", "private"),  # NAT64 well-known prefix
    ("64:ff9b::a00:1", "private"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::808:808", "public"),  # how an IPv6-only network reaches a public IPv4 host
    ("64:ff9b:1::a9fe:a9fe", "private"),  # RFC 8215 local-use NAT64
    ("2002:a9fe:a9fe::", "private"),  # 6to4 of 169.254.169.254
    ("2002:7f00:1::1", "loopback"),
    ("2002:a00:1::", "private"),
    ("2002:808:808::", "public"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),  # Teredo
    ("2001:0:a9fe:a9fe::", "private"),  # Teredo with the metadata address as its server
    ("2001:0:4136:e378:0:0:80ff:fffe", "loopback"),  # Teredo client 127.0.0.1 (stored inverted)
    ("fec0::a9fe:a9fe", "private"),  # site-local wrapping the metadata address
    ("fec0::7f00:1", "loopback"),
    ("fec0::1", "private"),  # site-local is deprecated and never global
])
def test_every_form_is_judged_by_what_it_wraps(address, verdict):
    assert classify(address) == verdict


@pytest.mark.parametrize("address", ["0.0.0.0", "0.0.0.1", "::", "::ffff:0.0.0.0"])
def test_unspecified_addresses_are_refused_whatever_is_allowed(address):
    with pytest.raises(AddressRefused, match="unspecified"):
        vet("h", 80, [address], [Endpoint.parse("127.0.0.1:80"), Endpoint.parse("h:80")], allow_private=True)


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "fec0::7f00:1",
                                     "::7f00:1"])
def test_wrapped_loopback_is_loopback_even_with_allow_private(address):
    with pytest.raises(AddressRefused, match="loopback"):
        vet("h", 80, [address], [], allow_private=True)


@pytest.mark.parametrize("address", ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "fec0::a9fe:a9fe",
                                     "::ffff:0:a9fe:a9fe", "2001:0:a9fe:a9fe::"])
def test_wrapped_metadata_address_is_refused_without_allow_private(address):
    with pytest.raises(AddressRefused, match="non-public"):
        vet("h", 80, [address], [], allow_private=False)
    vet("h", 80, [address], [], allow_private=True)  # it is private, not loopback


def test_one_bad_address_among_good_ones_refuses_the_host():
    with pytest.raises(AddressRefused):
        vet("rebind.example", 80, ["8.8.8.8", "10.0.0.1"], [], allow_private=False)
    vet("fine.example", 80, ["8.8.8.8", "2606:4700::1111"], [], allow_private=False)


def test_an_endpoint_matches_its_port_and_its_host_or_address_only():
    e = Endpoint.parse("127.0.0.1:8080")
    assert e.matches("127.0.0.1", "127.0.0.1", 8080)
    assert e.matches("localhost", "::ffff:127.0.0.1", 8080)  # the address behind the name
    assert not e.matches("127.0.0.1", "127.0.0.1", 8081)
    assert not e.matches("127.0.0.2", "127.0.0.2", 8080)
    assert Endpoint.parse("[::1]:9") == Endpoint("::1", 9)
    assert Endpoint.parse("LocalHost:9").matches("localhost", "::1", 9)


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:80", "[::1:80", ":80", "h:x"])
def test_a_malformed_allow_loopback_entry_is_a_config_error(entry):
    with pytest.raises(ValidationError, match="allow_loopback"):
        DownloadOptions(allow_loopback=[entry])


@pytest.fixture()
def contacted(monkeypatch):
    """Every TCP connection the downloader opens, by address."""
    seen: list[tuple[str, int]] = []
    real = socket.create_connection

    def spy(address, *args, **kwargs):
        seen.append(address[:2])
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return seen


@pytest.fixture()
def servers():
    """Two loopback servers: `a` serves an image, `b` redirects to it (another local port)."""
    a = HeaderServer({"/a.jpg": (b"\xff\xd8\xffimage", [])})
    b = HeaderServer({"/b.jpg": (b"\xff\xd8\xffother", []),
                      "/to-a": (b"", [("Location", a.url("/a.jpg"))], 302)})
    yield a, b
    a.__exit__()
    b.__exit__()


def _port(srv: HeaderServer) -> int:
    return srv.httpd.server_address[1]


def _blocked(dl: Downloader, url: str) -> str:
    with pytest.raises(FetchError) as err:
        dl.fetch(url)
    assert err.value.kind == "blocked", str(err.value)
    return str(err.value)


def test_unspecified_hosts_never_reach_the_local_server(servers, contacted):
    a, _ = servers
    port = _port(a)
    options = {**FAST_DOWNLOAD, "allow_private": True, "allow_loopback": []}
    with Downloader(DownloadOptions(**options)) as dl:
        for url in (f"http://0.0.0.0:{port}/a.jpg", f"http://0:{port}/a.jpg", f"http://[::]:{port}/a.jpg",
                    f"http://[::ffff:0.0.0.0]:{port}/a.jpg"):
            assert "unspecified" in _blocked(dl, url)
    assert contacted == [] and a.hits == {}


def test_numeric_spellings_of_loopback_are_loopback(servers, contacted):
    a, _ = servers
    port = _port(a)
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "allow_private": True, "allow_loopback": []})) as dl:
        for host in ("2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"):
            assert "loopback" in _blocked(dl, f"http://{host}:{port}/a.jpg")
    assert contacted == [] and a.hits == {}


def test_port_zero_is_refused(contacted):
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "allow_private": True})) as dl:
        for url in ("http://127.0.0.1:0/a.jpg", "http://example.invalid:0/a.jpg"):
            with pytest.raises(FetchError) as err:
                dl.fetch(url)
            assert err.value.kind == "url" and "port 0" in str(err.value)
    assert contacted == []


def test_the_allow_list_admits_its_endpoint_and_no_other_local_port(servers, contacted):
    a, b = servers
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "allow_loopback": [f"127.0.0.1:{_port(b)}"]})) as dl:
        assert dl.fetch(b.url("/b.jpg")).data == b"\xff\xd8\xffother"
        assert f"port {_port(a)} not in allow_loopback" in _blocked(dl, a.url("/a.jpg"))
        _blocked(dl, b.url("/to-a"))  # the redirect to a's port is refused
    assert a.hits == {}
    assert {p for _, p in contacted} == {_port(b)}
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD,
                                       "allow_loopback": [f"127.0.0.1:{_port(b)}", f"localhost:{_port(a)}"]})) as dl:
        _blocked(dl, a.url("/a.jpg"))  # a's entry names `localhost`: 127.0.0.1 in the URL is not it
        assert dl.fetch(f"http://localhost:{_port(a)}/a.jpg").data == b"\xff\xd8\xffimage"


def test_the_deprecated_true_allows_each_urls_own_endpoint_but_no_redirect_elsewhere(servers):
    a, b = servers
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "allow_loopback": True})) as dl:
        assert dl.fetch(a.url("/a.jpg")).data == b"\xff\xd8\xffimage"
        assert dl.fetch(b.url("/b.jpg")).data == b"\xff\xd8\xffother"
        assert f"port {_port(a)} not in allow_loopback" in _blocked(dl, b.url("/to-a"))
    assert a.hits == {"/a.jpg": 1}  # only the direct request
    with Downloader(DownloadOptions(**{**FAST_DOWNLOAD, "allow_loopback": False})) as dl:
        _blocked(dl, a.url("/a.jpg"))
