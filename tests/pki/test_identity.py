"""pki.identity: department codes, registered networks and their certificate extension."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exchange_common.errors import InputError
from pki.identity import (
    CertifiedIdentity,
    CertSerial,
    DeptCode,
    IPNetwork,
    Role,
    decode_networks,
    encode_networks,
    parse_dept_code,
    parse_networks,
    serial_hex,
)

# --- department codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["MZ330100", "a", "0", "RS-330100", "gx_01", "A" * 32, "mz330100-node_2"]
)
def test_dept_code_accepts(code: str) -> None:
    assert parse_dept_code(code) == code


@pytest.mark.parametrize(
    "code",
    [
        "",
        "../x",
        "..",
        "a/b",
        "a\\b",
        "MZ.330100",
        "-MZ",
        "_MZ",
        "MZ 01",
        " MZ01",
        "MZ01\n",
        "MZ01\x00",
        "A" * 33,
        "民政局",
        "ＭＺ01",  # full-width letters: look alike, are not ASCII
        "MZ٣",  # Arabic-Indic digit: \d would match it, the code must not
        "admin@host",
    ],
)
def test_dept_code_refuses(code: str) -> None:
    with pytest.raises(InputError) as info:
        parse_dept_code(code)
    assert info.value.code == "E_DEPT_CODE"
    assert info.value.exit_code == 3


_SAFE = re.compile(r"[A-Za-z0-9_-]+")


@given(st.text(max_size=40))
@example("../etc/passwd")
@example("a..b")
@example("MZ01\n")
def test_dept_code_accepted_means_safe(text: str) -> None:
    """Whatever is accepted is a safe path component and SFTP login name."""
    try:
        code = parse_dept_code(text)
    except InputError:
        return
    assert _SAFE.fullmatch(code)
    assert "/" not in code
    assert ".." not in code
    assert 1 <= len(code) <= 32
    assert code == text  # accepted as given, never "cleaned up" into something else


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", fullmatch=True))
def test_dept_code_accepts_whole_documented_alphabet(text: str) -> None:
    assert parse_dept_code(text) == text


# --- registered networks ----------------------------------------------------------------------


def test_parse_networks_keeps_order_and_drops_duplicates() -> None:
    nets = parse_networks(["10.1.0.0/16", "127.0.0.1", " 10.1.0.0/16 ", "2001:db8::/32"])
    assert [str(n) for n in nets] == ["10.1.0.0/16", "127.0.0.1/32", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("10.0.0.300", None),
        ("10.0.0.1/24", "10.0.0.0/24"),
        ("192.168.7.9/16", "192.168.0.0/16"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("10.0.0.0/33", None),
        ("", None),
        ("localhost", None),
        ("010.0.0.1", None),  # leading zeros: octal or decimal? refuse, don't guess
        ("10.0.0.1 10.0.0.2", None),
        ("fe80::1%eth0", None),  # an interface zone is local to the CA host's machine
    ],
)
def test_parse_networks_refuses(text: str, hint: str | None) -> None:
    with pytest.raises(InputError) as info:
        parse_networks(["10.9.9.9", text])
    assert info.value.code == "E_IP"
    assert repr(text) in info.value.message
    if hint is not None:
        assert f"did you mean {hint}?" in info.value.message
    else:
        assert "did you mean" not in info.value.message


_v4 = st.builds(
    lambda a, p: ipaddress.ip_network((a, p), strict=False),
    st.ip_addresses(v=4),
    st.integers(0, 32),
)
_v6 = st.builds(
    lambda a, p: ipaddress.ip_network((a, p), strict=False),
    st.ip_addresses(v=6),
    st.integers(0, 128),
)
_networks = st.lists(st.one_of(_v4, _v6), max_size=40)


@given(_networks)
def test_networks_round_trip(nets: list[IPNetwork]) -> None:
    der = encode_networks(nets)
    assert decode_networks(der) == nets


@given(_networks)
def test_parse_networks_accepts_its_own_output(nets: list[IPNetwork]) -> None:
    parsed = parse_networks(str(n) for n in nets)
    assert parsed == list(dict.fromkeys(nets))


def test_encode_networks_long_form_length() -> None:
    nets = [ipaddress.ip_network(f"10.{i}.0.0/16") for i in range(60)]
    der = encode_networks(nets)
    assert der[0] == 0x30
    assert der[1] == 0x82  # body > 255 bytes: two length octets
    assert decode_networks(der) == nets


def test_encode_networks_empty() -> None:
    assert encode_networks([]) == b"\x30\x00"
    assert decode_networks(b"\x30\x00") == []


@given(st.binary(max_size=200))
@example(b"")
@example(b"\x30")
@example(b"\x30\x80")
@example(b"\x30\x85\xff\xff\xff\xff\xff")
@example(b"\x30\x03\x16\x01\xff")
@example(b"\x30\x04\x16\x02\xc3\xa9")
@example(b"\x30\x0c\x16\x0a10.0.0.1/8")
def test_decode_networks_raises_only_value_error(data: bytes) -> None:
    try:
        nets = decode_networks(data)
    except ValueError:
        return
    # Whatever does decode is a list of real networks without host bits.
    for net in nets:
        assert isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network)
        assert ipaddress.ip_network(str(net), strict=True) == net


@given(_networks, st.binary(min_size=1, max_size=8))
def test_decode_networks_refuses_trailing_bytes(nets: list[IPNetwork], tail: bytes) -> None:
    with pytest.raises(ValueError):
        decode_networks(encode_networks(nets) + tail)


# --- identities -------------------------------------------------------------------------------


def _identity(*nets: str) -> CertifiedIdentity:
    return CertifiedIdentity(
        code=DeptCode("MZ330100"),
        name="杭州市民政局",
        role=Role.DEPARTMENT,
        networks=tuple(parse_networks(nets)),
        serial=CertSerial("1A"),
        fingerprint="00" * 32,
        not_before=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        chain=(),
    )


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.33.1.0", True),
        ("10.33.1.255", True),
        ("10.33.2.0", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("2001:db8:0:1::5", True),
        ("2001:db8:0:2::5", False),
        # an IPv4 peer seen through a dual-stack socket is its IPv4 address: the same rule as
        # the login gate and the pipeline (exchange_common.net)
        ("::ffff:10.33.1.5", True),
        ("not an address", False),
        ("", False),
        ("10.33.1.5/32", False),
    ],
)
def test_allows_address(address: str, allowed: bool) -> None:
    ident = _identity("10.33.1.0/24", "192.0.2.7", "2001:db8:0:1::/64")
    assert ident.allows_address(address) is allowed


def test_no_networks_allows_nothing() -> None:
    assert not _identity().allows_address("127.0.0.1")


@pytest.mark.parametrize(("serial", "text"), [(1, "1"), (0xABCDEF, "ABCDEF"), (2**159 + 10, None)])
def test_serial_hex_is_uppercase_openssl_style(serial: int, text: str | None) -> None:
    out = serial_hex(serial)
    assert out == (text or format(serial, "X"))
    assert int(out, 16) == serial
    assert out == out.upper()
