"""Which addresses a download may connect to, judged the way the standard library sees them.

Every address a host resolves to is normalised with `ipaddress` before it is judged: an
IPv6 form that carries an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-translated
`::ffff:0:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and the local-use
`64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo's server and client, the low 32 bits of a
site-local `fec0::/10`) is judged by what it carries as well, and the worst verdict wins.
Python 3.11 calls NAT64, 6to4 and site-local addresses global, so `is_global` alone would
let `64:ff9b::a9fe:a9fe` (the cloud metadata address) through.

Verdicts, worst first: `unspecified` (0.0.0.0/8, `::`: Linux connects them to the local
host; always refused), `loopback` (refused unless that exact endpoint is allowed),
`private` (every other non-global range; refused unless `allow_private`), `public`.
"""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Literal, Union

Verdict = Literal["public", "private", "loopback", "unspecified"]
RANK: dict[str, int] = {"public": 0, "private": 1, "loopback": 2, "unspecified": 3}

THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host on this network": connects locally
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: never global
COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible form
TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 SIIT
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class AddressRefused(Exception):
    """An address (or endpoint) the options do not allow; the message says which and why."""


def _v4_verdict(ip: ipaddress.IPv4Address) -> Verdict:
    if ip in THIS_NETWORK:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_multicast or not ip.is_global:
        return "private"
    return "public"


def _low32(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries in any form a stack or a relay may unwrap."""
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out += list(ip.teredo)
    if (ip in NAT64 or ip in NAT64_LOCAL or ip in TRANSLATED or ip.is_site_local
            or (ip in COMPATIBLE and int(ip) > 1)):
        out.append(_low32(ip))
    return out


@functools.lru_cache(maxsize=4096)
def classify(address: str) -> Verdict:
    """The verdict on one address literal (a zone id `%eth0` is ignored); ValueError if it is none."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_verdict(ip)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    inner = embedded_ipv4(ip)
    if ip.ipv4_mapped is not None:
        # The kernel connects a mapped address to the IPv4 host itself: judge only that.
        return _v4_verdict(ip.ipv4_mapped)
    own: Verdict = "private" if (ip.is_multicast or not ip.is_global or ip.is_site_local or ip in NAT64_LOCAL
                                 or ip in TRANSLATED or ip in COMPATIBLE) else "public"
    # 0.x.x.x inside a translation or tunnel form is no local address (fec0::1 carries "0.0.0.1"):
    # only a mapped address reaches the kernel as the IPv4 address itself.
    wrapped: list[Verdict] = ["private" if v == "unspecified" else v for v in map(_v4_verdict, inner)]
    return max([own, *wrapped], key=RANK.__getitem__)


def normalised(address: str) -> str:
    """The address as compared with an allow-list: the IPv4 host behind a mapped IPv6 address, else itself."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass(frozen=True)
class Endpoint:
    """One allowed loopback endpoint: `host` is an address literal or a host name as the URL spells it."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Endpoint":
        """`127.0.0.1:8080`, `localhost:8080` or `[::1]:8080`; ValueError with the reason otherwise."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} is not host:port")
        if host.startswith("["):
            if not host.endswith("]"):
                raise ValueError(f"{text!r}: unclosed [")
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: port must be 1-65535")
        try:
            host = normalised(host)
        except ValueError:
            host = host.lower()
        return cls(host, int(port))

    def matches(self, url_host: str, address: str, port: int) -> bool:
        return port == self.port and self.host in (url_host.strip("[]").lower(), normalised(address))


def vet(url_host: str, port: int, addresses: Iterable[str], allowed_loopback: Iterable[Endpoint],
        allow_private: bool) -> None:
    """AddressRefused unless every address may be connected to: one bad address refuses the host,
    since a mixed answer is how DNS rebinding slips a private address past a check."""
    allowed = list(allowed_loopback)
    for address in addresses:
        verdict = classify(address)
        what = f"{url_host} is" if url_host.strip("[]") == address else f"{url_host} resolves to"
        if verdict == "unspecified":
            raise AddressRefused(f"{what} unspecified address {address} (connects to this host; always refused)")
        if verdict == "loopback" and not any(e.matches(url_host, address, port) for e in allowed):
            listed = ", ".join(f"{e.host}:{e.port}" for e in allowed) or "none"
            raise AddressRefused(f"{what} loopback address {address}, port {port} not in allow_loopback ({listed})")
        if verdict == "private" and not allow_private:
            raise AddressRefused(f"{what} non-public address {address} (allow_private is off)")
