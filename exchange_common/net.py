"""The IP registration check (部省 第五条): does a peer address lie in registered networks?

One rule for every caller (the SFTP front's pre-banner check and its login check): a peer
address is hostile input, so :func:`in_networks` never raises for it and never admits anything
it cannot parse. An IPv4 peer seen through a dual-stack socket (``::ffff:10.1.2.3``) is the IPv4
address it maps, so a registration can be neither bypassed nor broken by the socket family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

__all__ = [
    "IPNetwork",
    "in_networks",
    "normalise_address",
    "parse_host_port",
    "parse_networks_lenient",
]

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalise_address(text: str) -> str | None:
    """Canonical text of a peer address, or ``None`` if it is not an IP address.

    IPv4-mapped IPv6 addresses become IPv4 and a zone suffix (``%eth0``) is dropped, so one host
    always has one spelling in the ban list, the logs and the registry check. A prefix
    (``10.1.2.3/32``) is not an address.
    """
    if not isinstance(text, str):
        return None
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_networks_lenient(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse registered networks, skipping any that do not parse.

    Host bits are allowed (``10.1.2.3/24`` is ``10.1.2.0/24``), as the registry may hold them.
    A skipped network admits nothing, which is the safe side of a corrupt registry row.
    """
    out: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except (ValueError, TypeError):
            continue
    return tuple(out)


def in_networks(address: str, networks: Iterable[IPNetwork | str]) -> bool:
    """True when ``address`` lies in one of ``networks`` (CIDR text or parsed networks).

    Malformed input on either side never admits anything and never raises: an address that
    does not parse is refused, a network that does not parse is skipped. The address is
    normalised first (:func:`normalise_address`), so ``::ffff:10.1.2.3`` lies in
    ``10.0.0.0/8``; an IPv4 address never lies in an IPv6 network and vice versa.
    """
    canonical = normalise_address(address)
    if canonical is None:
        return False
    ip = ipaddress.ip_address(canonical)
    for net in networks:
        parsed = parse_networks_lenient([net]) if isinstance(net, str) else (net,)
        if any(n.version == ip.version and ip in n for n in parsed):
            return True
    return False


def parse_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; ``ValueError`` when it is not one
    (no colon, no host, a port that is not a number from 0 to 65535)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host, int(port)
