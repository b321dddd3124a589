"""Property tests: the bundle parsers, fed hostile input, raise BundleError and nothing else.

Attack: a peer sends bytes crafted to crash or confuse the reader (exceptions that escape as
tracebacks, parser differentials, resource exhaustion). Hypothesis generates arbitrary bytes,
byte-level mutations of a real header and bundle, and JSON-level mutations that keep the
header canonical so they reach the field checks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange_common.limits import DEFAULT_LIMITS
from pki._bundle_format import canonical_json
from pki._bundle_manifest import parse_manifest
from pki.bundle import BundleError, parse_header, verify
from tests.conftest import make_ca
from tests.pki.bundlegen import Parties, Parts, make_parties, manifest_for, seal_bytes

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Parties, bytes]]:
    ca = make_ca(tmp_path_factory.mktemp("fuzz") / "ca", intermediate=True)
    parties = make_parties(ca)
    bundle = seal_bytes(
        parties,
        [("名单.csv", "张三,低保\n".encode()), ("b.bin", b"\0" * 300)],
        recipients=[parties.recipient, parties.outsider],
    )
    yield parties, bundle
    ca.ca.close()


def _only_bundle_errors(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        parse_header(data, DEFAULT_LIMITS)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.binary(max_size=2048))
def test_header_parser_arbitrary_bytes(data: bytes) -> None:
    _only_bundle_errors(data)


@FUZZ
@given(st.data())
def test_header_parser_byte_mutations(world: tuple[Parties, bytes], data: st.DataObject) -> None:
    header = bytearray(Parts.of(world[1]).header)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(header) - 1))
        if op == "set":
            header[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            header[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del header[pos : pos + data.draw(st.integers(1, 8))]
    _only_bundle_errors(bytes(header))


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(st.data())
def test_header_parser_json_mutations(world: tuple[Parties, bytes], data: st.DataObject) -> None:
    """Canonical JSON that is wrong in one field: replaced, deleted, or a key added."""
    header = json.loads(Parts.of(world[1]).header)
    paths = [p for p in _paths(header) if p]
    path = data.draw(st.sampled_from(paths))
    parent: Any = header
    for step in path[:-1]:
        parent = parent[step]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(json_values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=10))] = data.draw(json_values)
    else:
        parent.append(data.draw(json_values))
    try:
        encoded = canonical_json(header)
    except ValueError:  # lone surrogates cannot be UTF-8: not a header anyone can send
        return
    _only_bundle_errors(encoded)


@FUZZ
@given(st.binary(max_size=4096))
def test_manifest_parser_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        parse_manifest(data, DEFAULT_LIMITS)


@FUZZ
@given(json_values, st.sampled_from(["name", "size", "sha256", "media_type", "records"]))
def test_manifest_parser_field_mutations(value: Any, key: str) -> None:
    manifest = manifest_for([("a.csv", b"x")])
    manifest["members"][0][key] = value
    try:
        encoded = canonical_json(manifest)
    except ValueError:
        return
    with contextlib.suppress(BundleError):
        parse_manifest(encoded, DEFAULT_LIMITS)


@settings(FUZZ, max_examples=200)
@given(st.binary(max_size=512))
def test_verify_arbitrary_bytes_after_the_magic(world: tuple[Parties, bytes], tail: bytes) -> None:
    parties, _ = world
    with pytest.raises(BundleError):
        verify(io.BytesIO(b"SAXBNDL1" + tail), parties.trust, now=parties.now)


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_verify_mutated_bundles(world: tuple[Parties, bytes], data: st.DataObject) -> None:
    parties, bundle = world
    mutated = bytearray(bundle)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if op == "set":
            new = data.draw(st.integers(0, 255))
            if new == mutated[pos]:
                new ^= 0xFF
            mutated[pos] = new
        elif op == "insert":
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del mutated[pos : pos + data.draw(st.integers(1, 16))]
        else:
            del mutated[pos:]
        if not mutated:
            break
    if bytes(mutated) == bundle:  # an insert undone by a delete
        return
    with pytest.raises(BundleError):
        verify(io.BytesIO(bytes(mutated)), parties.trust, now=parties.now)


def test_world_bundle_is_valid(world: tuple[Parties, bytes], tmp_path: Path) -> None:
    parties, bundle = world
    vb = verify(io.BytesIO(bundle), parties.trust, now=parties.now)
    assert vb.header.created_at <= dt.datetime.now(dt.UTC)
