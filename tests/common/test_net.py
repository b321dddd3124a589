"""exchange_common.net: the IP registration check (部省 第五条), one definition for every caller.

A peer address is hostile input: malformed text must be refused without raising, and an IPv4
peer seen through a dual-stack socket (``::ffff:10.1.2.3``) is the IPv4 host it maps.
"""

from __future__ import annotations

import ipaddress

import pytest

from exchange_common.net import in_networks, normalise_address, parse_networks_lenient

NETS = ["10.1.0.0/16", "192.0.2.7/32", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),  # dual-stack socket view of an IPv4 peer
        ("fe80::1%eth0", "fe80::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("not an address", None),
        ("", None),
        ("10.1.2.3/24", None),
        ("10.1.2.3\n", None),
        ("010.001.002.003", None),  # leading zeros are ambiguous (octal?), refused
    ],
)
def test_normalise_address(raw: str, expected: str | None) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.200.3", True),
        ("10.1.0.0", True),
        ("10.2.0.1", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("2001:db8::42", True),
        ("2001:db9::42", False),
        # Decision: an IPv4-mapped IPv6 address is the IPv4 host it maps, so it lies in the
        # IPv4 network (the front accepts on dual-stack sockets; refusing would lock out
        # registered departments, admitting by the IPv6 spelling would not widen anything).
        ("::ffff:10.1.2.3", True),
        ("::ffff:10.2.0.1", False),
        ("fe80::1%eth0", False),
    ],
)
def test_in_networks(address: str, allowed: bool) -> None:
    assert in_networks(address, NETS) is allowed


@pytest.mark.parametrize(
    "address",
    ["", "garbage", "10.1.2.3/32", "10.1.2", "10.1.2.3.4", "::ffff:", "%eth0", "1" * 10_000],
)
def test_malformed_address_is_refused_without_raising(address: str) -> None:
    assert in_networks(address, [*NETS, "0.0.0.0/0", "::/0"]) is False


def test_non_string_address_is_refused_without_raising() -> None:
    assert in_networks(None, NETS) is False  # type: ignore[arg-type]
    assert in_networks(b"10.1.2.3", NETS) is False  # type: ignore[arg-type]


def test_networks_as_text_or_objects() -> None:
    parsed = [ipaddress.ip_network(n) for n in NETS]
    for address in ("10.1.200.3", "192.0.2.7", "2001:db8::42", "::ffff:10.1.2.3"):
        assert in_networks(address, parsed) is in_networks(address, NETS) is True
    assert in_networks("10.1.2.3", [ipaddress.ip_network("10.0.0.0/8")])


def test_malformed_networks_are_skipped_and_admit_nothing() -> None:
    assert not in_networks("10.1.2.3", ["garbage", "", "10.1.2.3/33", "300.0.0.0/8"])
    assert in_networks("10.1.2.3", ["garbage", "10.1.2.0/24"])


def test_no_networks_admit_nothing() -> None:
    assert not in_networks("10.1.2.3", [])
    assert not in_networks("127.0.0.1", iter(()))


def test_address_family_never_crosses() -> None:
    # An IPv4 peer never lies in an IPv6 network, even one that spells IPv4-mapped space.
    assert not in_networks("10.1.2.3", ["::/0"])
    assert not in_networks("2001:db8::1", ["0.0.0.0/0"])


def test_parse_networks_lenient() -> None:
    nets = parse_networks_lenient(["10.1.2.3/24", "garbage", "2001:db8::/32", ""])
    assert nets == (ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
