"""Signed checkpoints (C2SP signed-note + tlog-checkpoint): the format, both key types, and
every forgery refused with E_CHECKPOINT."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from exchange_common.errors import PeerError
from pki.checkpoint import Checkpoint, key_id, open_checkpoint, sign_checkpoint
from pki.keys import KeyType, generate_private_key

ORIGIN = "exchange-node/NODE330000/audit"
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture(scope="module", params=[KeyType.EC, KeyType.RSA])
def key(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return generate_private_key(request.param)


def test_format_round_trip(key) -> None:  # type: ignore[no-untyped-def]
    cp = Checkpoint(ORIGIN, 1234, ROOT)
    note = sign_checkpoint(cp, key)
    body, sig = note.split("\n\n")
    assert body == f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith(f"\u2014 {ORIGIN} ") and sig.endswith("\n")
    blob = base64.b64decode(sig.split(" ")[2])
    assert blob[:4] == key_id(ORIGIN, key.public_key())
    assert open_checkpoint(note, key.public_key(), origin=ORIGIN) == cp
    assert open_checkpoint(note.encode(), key.public_key()) == cp


def test_ec_key_id_is_the_spec_s() -> None:
    key = generate_private_key(KeyType.EC)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x02" + spki).digest()[:4]
    assert key_id(ORIGIN, key.public_key()) == expected


def _refused(note: str | bytes, key, match: str, **kw: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PeerError, match=match) as e:
        open_checkpoint(note, key.public_key(), **kw)
    assert e.value.code == "E_CHECKPOINT"


def test_forged_size_or_root_is_refused(key) -> None:  # type: ignore[no-untyped-def]
    note = sign_checkpoint(Checkpoint(ORIGIN, 1234, ROOT), key)
    _refused(note.replace("\n1234\n", "\n1235\n"), key, "does not verify")
    other = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    _refused(note.replace(base64.b64encode(ROOT).decode(), other), key, "does not verify")


def test_another_key_is_not_the_node_s(key) -> None:  # type: ignore[no-untyped-def]
    forger = generate_private_key(KeyType.EC)
    note = sign_checkpoint(Checkpoint(ORIGIN, 9, ROOT), forger)
    _refused(note, key, "no signature by the node's key")
    # a second signature by an unknown key is ignored, the node's still counts
    mine = sign_checkpoint(Checkpoint(ORIGIN, 9, ROOT), key)
    both = mine + note.split("\n\n")[1]
    assert open_checkpoint(both, key.public_key()).size == 9


def test_wrong_origin_is_refused(key) -> None:  # type: ignore[no-untyped-def]
    note = sign_checkpoint(Checkpoint("exchange-node/OTHER/audit", 9, ROOT), key)
    _refused(note, key, "no signature", origin=ORIGIN)


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda n: n.replace("\n\n", "\n"), "no blank line"),
        (lambda n: n.replace("\u2014 ", "- "), "signature line"),
        (lambda n: n + "\u2014 x !!!\n", "not base64"),
        (lambda n: n.replace("\n1234\n", "\n\x071234\n"), "control characters"),
        (lambda n: n.encode("utf-16"), "not UTF-8"),
        (lambda n: n + "\u2014 x " + "A" * 90000 + "\n", "longer than"),
    ],
)
def test_malformed_notes_are_refused(key, mangle, why: str) -> None:  # type: ignore[no-untyped-def]
    note = sign_checkpoint(Checkpoint(ORIGIN, 1234, ROOT), key)
    _refused(mangle(note), key, why)


@pytest.mark.parametrize(
    ("size", "root", "why"),
    [("01234", ROOT, "leading zeros"), ("-1", ROOT, "decimal"), ("12", b"short", "not 32")],
)
def test_malformed_bodies_are_refused(key, size: str, root: bytes, why: str) -> None:  # type: ignore[no-untyped-def]
    # signed by the right key, so only the body's checks can refuse it
    from pki import checkpoint as mod

    body = f"{ORIGIN}\n{size}\n{base64.b64encode(root).decode()}\n"
    real = mod.Checkpoint.body
    try:
        mod.Checkpoint.body = lambda self: body  # type: ignore[method-assign]
        note = sign_checkpoint(Checkpoint(ORIGIN, 0, ROOT), key)
    finally:
        mod.Checkpoint.body = real  # type: ignore[method-assign]
    _refused(note, key, why)
