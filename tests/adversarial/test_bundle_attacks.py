"""Attacks on sealed bundles. Each test names its attack and asserts two things: the stable
reason code, and that no plaintext was released (the output folder does not exist and nothing
else appeared beside the bundle).

Attackers modelled: a relay or anyone on the path (flips, cuts, reorders, re-addresses bytes
but holds no key), an insider recipient (knows the content key, holds its own signing key),
a malicious sender (signs and encrypts whatever it likes), and a sender whose certificate is
expired, revoked or from another CA. Bundles come from tests/pki/bundlegen.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cryptography.cobblestone import Cobblestone128Encryptor

from exchange_common.limits import Limits
from pki._bundle_crypto import wrap_key
from pki._bundle_format import INNER_MAGIC, canonical_json, content_context
from pki.bundle import BundleError, open_bundle, verify
from pki.ca import IssuedCertificate
from pki.keys import fingerprint
from pki.verify import TrustStore
from tests.conftest import CAFixture, make_ca
from tests.pki import bundlegen
from tests.pki.bundlegen import (
    CHUNK,
    Parties,
    Parts,
    craft,
    flip,
    inner_stream,
    layout,
    make_parties,
    manifest_for,
    seal_bytes,
    with_header,
    with_raw_header,
)

DAY = dt.timedelta(days=1)


@pytest.fixture
def parties(test_ca: CAFixture) -> Parties:
    return make_parties(test_ca)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty folder holding only the attacked bundle and (maybe) the output folder."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def refused(
    p: Parties,
    data: bytes | Callable[[], BinaryIO],
    work: Path,
    code: str | set[str],
    *,
    who: IssuedCertificate | None = None,
    trust: TrustStore | None = None,
    now: dt.datetime | None = None,
    verify_too: bool = True,
    limits: Limits | None = None,
) -> BundleError:
    """Open (and verify) the attacked bundle; assert the code and that nothing was released."""
    codes = {code} if isinstance(code, str) else code
    who = who or p.recipient
    trust = trust or p.trust
    now = now or p.now
    extra: dict[str, Any] = {"limits": limits} if limits else {}
    out = work / "out"
    if isinstance(data, bytes):
        source: Path | BinaryIO = bundlegen.write(work / "attack.bundle", data)
    else:
        source = data()
    before = sorted(work.iterdir())
    assert who.key is not None
    with pytest.raises(BundleError) as info:
        open_bundle(
            source,
            out,
            recipient_key=who.key,
            recipient_cert=who.certificate,
            trust=trust,
            now=now,
            **extra,
        )
    assert info.value.code in codes, info.value.diagnostics()
    assert not out.exists(), "plaintext released"
    assert sorted(work.iterdir()) == before, "something was left beside the bundle"
    assert info.value.message.startswith("bundle rejected: ")
    if verify_too and isinstance(data, bytes):
        with pytest.raises(BundleError) as vinfo:
            verify(io.BytesIO(data), trust, now=now, **extra)
        assert vinfo.value.code in codes
    return info.value


def _accepts(p: Parties, data: bytes, **kw: Any) -> None:
    verify(io.BytesIO(data), kw.pop("trust", p.trust), now=kw.pop("now", p.now), **kw)


# --- flipped bytes -------------------------------------------------------------------------


def test_any_single_flipped_byte_is_refused_by_verify(parties: Parties) -> None:
    """Exhaustive: every byte position, two bit masks. Nothing may verify."""
    data = seal_bytes(parties, [("名单.csv", "张三,低保\n".encode() * 5)])
    _accepts(parties, data)
    codes: dict[str, int] = {}
    for mask in (0x01, 0x80):
        for pos in range(len(data)):
            with pytest.raises(BundleError) as info:
                verify(io.BytesIO(flip(data, pos, mask)), parties.trust, now=parties.now)
            codes[info.value.code] = codes.get(info.value.code, 0) + 1
    assert sum(codes.values()) == 2 * len(data)
    assert {"E_FORMAT", "E_SIGNATURE", "E_TRUNCATED"} <= set(codes)


def test_flipped_byte_sample_releases_nothing_on_open(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", os.urandom(3 * CHUNK))])
    lay = layout(data)
    marks = [0, 7, 8, 11, lay.header_start, lay.ct_start - 1, lay.ct_start, lay.ct_start + 60,
             lay.ct_start + CHUNK, lay.signed_length - 1, lay.sig_start, lay.chain_start,
             lay.footer_start, lay.total - 9, lay.total - 1]  # fmt: skip
    for pos in sorted(set(marks + list(range(0, lay.total, 997)))):
        refused(parties, flip(data, pos, 0xFF), work, _ANY)


_ANY = {
    "E_FORMAT", "E_VERSION", "E_ALGORITHM", "E_LIMIT", "E_TRUNCATED", "E_SIGNATURE", "E_CHAIN",
    "E_EXPIRED", "E_NOT_YET_VALID", "E_KEY_USAGE", "E_IDENTITY", "E_RECIPIENT",
}  # fmt: skip


def test_flipped_byte_in_ciphertext_is_a_signature_failure(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", os.urandom(2 * CHUNK))])
    lay = layout(data)
    for pos in (
        lay.ct_start,
        lay.ct_start + 100,
        lay.ct_start + CHUNK + 500,
        lay.signed_length - 1,
    ):
        refused(parties, flip(data, pos), work, "E_SIGNATURE")


def test_flipped_byte_in_signature_is_a_signature_failure(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", b"x")])
    lay = layout(data)
    for pos in range(lay.sig_start, lay.chain_start, 9):
        refused(parties, flip(data, pos), work, "E_SIGNATURE")


def test_flipped_byte_in_footer_chain_or_lengths_is_refused(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", b"x")])
    lay = layout(data)
    refused(parties, flip(data, lay.chain_start + 40), work, "E_FORMAT")
    # A signature length one byte off can still leave the chain in place: then the signature
    # (and the signed length) are wrong instead.
    refused(parties, flip(data, lay.footer_start + 3), work, {"E_FORMAT", "E_SIGNATURE"})
    refused(parties, flip(data, lay.footer_start + 2), work, "E_FORMAT")
    refused(parties, flip(data, lay.footer_start + 7), work, "E_FORMAT")  # chain length
    refused(parties, flip(data, lay.total - 1), work, "E_TRUNCATED")  # footer magic


def test_flipped_byte_in_header_json_is_refused(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", b"x")])
    header = Parts.of(data).header
    pos_kind = 12 + header.index(b'"kind":"data"') + len('"kind":"')
    refused(parties, flip(data, pos_kind, 0x20), work, "E_FORMAT")  # "Data": unknown kind
    pos_brace = 12
    refused(parties, flip(data, pos_brace), work, "E_FORMAT")
    # A change that keeps the header well-formed is caught by the signature.
    pos_id = 12 + header.index(b'"bundle_id":"') + len('"bundle_id":"')
    edited = bytearray(data)
    edited[pos_id] = ord("0") if edited[pos_id] != ord("0") else ord("1")
    refused(parties, bytes(edited), work, "E_SIGNATURE")


# --- truncation ----------------------------------------------------------------------------


def test_truncation_at_every_chunk_boundary(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("big.bin", os.urandom(6 * CHUNK + 123))])
    lay = layout(data)
    cuts = lay.chunk_boundaries()
    assert len(cuts) >= 7
    for cut in [lay.ct_start, *cuts, lay.signed_length]:
        refused(parties, data[:cut], work, "E_TRUNCATED")


def test_truncation_at_every_byte_of_the_signature_block(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.bin", os.urandom(100))])
    lay = layout(data)
    for cut in range(lay.sig_start, lay.total):
        with pytest.raises(BundleError) as info:
            verify(io.BytesIO(data[:cut]), parties.trust, now=parties.now)
        assert info.value.code == "E_TRUNCATED", cut
    for cut in range(lay.footer_start, lay.total):
        refused(parties, data[:cut], work, "E_TRUNCATED")


def test_truncation_inside_prefix_and_header(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.bin", b"x")])
    for cut in (0, 1, 7, 8, 11, 12, 13, 100, layout(data).ct_start - 1):
        refused(parties, data[:cut], work, "E_TRUNCATED")


def test_truncation_with_the_signature_block_reattached(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("big.bin", os.urandom(4 * CHUNK))])
    lay = layout(data)
    block = data[lay.sig_start :]
    for cut in lay.chunk_boundaries()[1:]:
        refused(parties, data[:cut] + block, work, "E_SIGNATURE")


def test_garbage_appended_after_the_footer(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.bin", b"x")])
    refused(parties, data + b"\0", work, "E_TRUNCATED")
    refused(parties, data + data, work, {"E_FORMAT", "E_SIGNATURE"})


# --- chunk reordering and swapping ---------------------------------------------------------


def _chunks(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    parts = Parts.of(data)
    ct = parts.ciphertext
    head, body = ct[: bundlegen.STREAM_PREFIX], ct[bundlegen.STREAM_PREFIX :]
    full = [
        body[i : i + bundlegen.SEALED_CHUNK] for i in range(0, len(body), bundlegen.SEALED_CHUNK)
    ]
    return head, full[:-1], full[-1]


def _with_ciphertext(data: bytes, ciphertext: bytes, resign: IssuedCertificate | None) -> bytes:
    parts = Parts.of(data)
    new = Parts(parts.header, ciphertext, parts.signature, parts.chain)
    if resign is None:
        return new.assemble()
    assert resign.key is not None
    return new.resign(resign.key)


def test_chunks_reordered(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("big.bin", os.urandom(4 * CHUNK + 5))])
    head, chunks, last = _chunks(data)
    swapped = [chunks[0], chunks[2], chunks[1], *chunks[3:]]
    ct = head + b"".join(swapped) + last
    refused(parties, _with_ciphertext(data, ct, None), work, "E_SIGNATURE")


def test_chunks_reordered_even_with_a_valid_signature(parties: Parties, work: Path) -> None:
    """Second layer: if the signature were bypassed (the sender itself reorders), Cobblestone
    still refuses chunks out of order."""
    data = seal_bytes(parties, [("big.bin", os.urandom(4 * CHUNK + 5))])
    head, chunks, last = _chunks(data)
    reordered = head + b"".join([chunks[1], chunks[0], *chunks[2:]]) + last
    refused(
        parties,
        _with_ciphertext(data, reordered, parties.sender),
        work,
        "E_DECRYPT",
        verify_too=False,
    )
    dropped = head + b"".join([chunks[0], *chunks[2:]]) + last
    refused(
        parties,
        _with_ciphertext(data, dropped, parties.sender),
        work,
        "E_DECRYPT",
        verify_too=False,
    )
    doubled = head + b"".join([chunks[0], *chunks]) + last
    refused(
        parties,
        _with_ciphertext(data, doubled, parties.sender),
        work,
        "E_DECRYPT",
        verify_too=False,
    )
    final_moved = head + b"".join(chunks[:-1]) + last  # drop a chunk before the final one
    refused(
        parties,
        _with_ciphertext(data, final_moved, parties.sender),
        work,
        "E_DECRYPT",
        verify_too=False,
    )


def test_chunk_swapped_between_two_bundles(parties: Parties, work: Path) -> None:
    a = seal_bytes(parties, [("a.bin", os.urandom(3 * CHUNK))])
    b = seal_bytes(parties, [("a.bin", os.urandom(3 * CHUNK))])
    head_a, chunks_a, last_a = _chunks(a)
    _, chunks_b, _ = _chunks(b)
    mixed = head_a + chunks_a[0] + chunks_b[1] + b"".join(chunks_a[2:]) + last_a
    refused(parties, _with_ciphertext(a, mixed, None), work, "E_SIGNATURE")
    refused(
        parties, _with_ciphertext(a, mixed, parties.sender), work, "E_DECRYPT", verify_too=False
    )


def test_whole_ciphertext_moved_to_another_header(parties: Parties, work: Path) -> None:
    """The sender's header of bundle B over bundle A's ciphertext, signed by the sender: the
    Cobblestone context binds the ciphertext to its own header."""
    a = seal_bytes(parties, [("a.bin", b"A" * 100)])
    b = seal_bytes(parties, [("a.bin", b"B" * 100)])
    moved = _with_ciphertext(b, Parts.of(a).ciphertext, parties.sender)
    refused(parties, moved, work, "E_DECRYPT", verify_too=False)


# --- recipients edited ---------------------------------------------------------------------


@pytest.fixture
def two_recipient_bundle(parties: Parties) -> bytes:
    return seal_bytes(
        parties, [("a.csv", b"secret")], recipients=[parties.recipient, parties.outsider]
    )


def test_recipient_removed(parties: Parties, two_recipient_bundle: bytes, work: Path) -> None:
    data = with_header(two_recipient_bundle, lambda h: h["recipients"].pop())
    refused(parties, data, work, "E_SIGNATURE")


def test_recipient_swapped_order(parties: Parties, two_recipient_bundle: bytes, work: Path) -> None:
    data = with_header(two_recipient_bundle, lambda h: h["recipients"].reverse())
    refused(parties, data, work, "E_SIGNATURE")


def test_recipient_added_by_an_insider(parties: Parties, work: Path, test_ca: CAFixture) -> None:
    """An insider re-addresses the bundle to a third party by wrapping the content key it
    learned. The signature covers the recipient list: refused for everyone."""
    data = seal_bytes(parties, [("a.csv", b"secret")])
    third = test_ca.issue("SW330100", "杭州市税务局")
    key = bundlegen.content_key_of(data, parties.recipient)
    header = Parts.of(data).header_json()
    bid = __import__("uuid").UUID(header["bundle_id"])
    entry = wrap_key(third.certificate, key, bid, os.urandom).to_json()
    edited = with_header(data, lambda h: h["recipients"].append(entry))
    refused(parties, edited, work, "E_SIGNATURE", who=third)
    refused(parties, edited, work, "E_SIGNATURE")


def test_recipient_fingerprint_replaced(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", b"secret")])
    fp = fingerprint(parties.outsider.certificate)
    edited = with_header(data, lambda h: h["recipients"][0].update(fingerprint=fp))
    refused(parties, edited, work, "E_SIGNATURE", who=parties.outsider)


def test_readdressed_and_resigned_by_an_insider(
    parties: Parties, work: Path, test_ca: CAFixture
) -> None:
    """The insider adds a recipient and signs as itself. Verification then (correctly) names
    the insider as sender, and the content still cannot be opened: it is bound to the
    original header."""
    data = seal_bytes(parties, [("a.csv", b"secret")])
    key = bundlegen.content_key_of(data, parties.recipient)
    header = Parts.of(data).header_json()
    bid = __import__("uuid").UUID(header["bundle_id"])
    entry = wrap_key(parties.outsider.certificate, key, bid, os.urandom).to_json()
    edited = Parts.of(with_header(data, lambda h: h["recipients"].append(entry)))
    insider = parties.recipient
    assert insider.key is not None
    resigned = edited.resign(insider.key, chain=insider.chain)
    vb = verify(io.BytesIO(resigned), parties.trust, now=parties.now)
    assert vb.sender.code == "RS330100"
    refused(parties, resigned, work, "E_DECRYPT", who=parties.outsider, verify_too=False)


def test_not_addressed_to_me(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a.csv", b"secret")])
    refused(parties, data, work, "E_RECIPIENT", who=parties.outsider, verify_too=False)


def test_wrapped_key_corrupted_by_the_sender(parties: Parties, work: Path) -> None:
    def edit(h: dict[str, Any]) -> None:
        h["recipients"][0]["wrapped_key"] = "A" * 32

    data = craft(parties, inner_stream([], manifest_for([])), header_edit=edit)
    refused(parties, data, work, "E_DECRYPT", verify_too=False)


# --- sender certificate --------------------------------------------------------------------


def test_signer_certificate_expired(test_ca: CAFixture, work: Path) -> None:
    p = make_parties(test_ca)
    short = test_ca.issue("MZ330101", "临时证书", days=1)
    data = seal_bytes(p, [("a", b"x")], sender=short)
    later = p.now + 2 * DAY
    err = refused(p, data, work, "E_EXPIRED", trust=test_ca.trust(later), now=later)
    assert "certificate" in err.message
    assert "certificate" in (err.detail or "")


def test_signer_certificate_revoked(test_ca: CAFixture, work: Path) -> None:
    p = make_parties(test_ca)
    data = seal_bytes(p, [("a", b"x")])
    test_ca.ca.revoke(serial=p.sender.record.serial)
    refused(p, data, work, "E_REVOKED", trust=test_ca.trust(p.now))


def test_signer_from_another_ca(test_ca: CAFixture, work: Path, tmp_path: Path) -> None:
    p = make_parties(test_ca)
    other = make_ca(tmp_path / "other-ca")
    try:
        stranger = other.issue("MZ330100", "杭州市民政局")  # same name, wrong CA
        data = seal_bytes(p, [("a", b"x")], sender=stranger)
    finally:
        other.ca.close()
    refused(p, data, work, "E_CHAIN")


def test_signer_checked_with_a_stale_or_missing_crl(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    later = parties.now + 8 * DAY
    refused(parties, data, work, "E_CRL_STALE", now=later)
    no_crl = TrustStore(parties.trust.roots, parties.trust.intermediates, ())
    refused(parties, data, work, "E_CRL_MISSING", trust=no_crl)


def test_empty_trust_store_fails_closed(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    refused(parties, data, work, "E_TRUST", trust=TrustStore(()))


# --- bundle times --------------------------------------------------------------------------


def test_bundle_past_its_expiry(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")], ttl=DAY)
    later = parties.now + 2 * DAY
    err = refused(parties, data, work, "E_EXPIRED", now=later, trust=parties.ca.trust(later))
    assert err.message == "bundle rejected: bundle has expired"
    assert "bundle (not the certificate)" in (err.detail or "")


def test_bundle_dated_in_the_future(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")], now=parties.now + dt.timedelta(minutes=6))
    refused(parties, data, work, "E_NOT_YET_VALID")


# --- versions and algorithms (no downgrade, no guessing) -----------------------------------


def _signed_edit(p: Parties, data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    assert p.sender.key is not None
    return with_header(data, edit, key=p.sender.key)


def test_header_claims_a_future_version(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    refused(parties, _signed_edit(parties, data, lambda h: h.update(version=2)), work, "E_VERSION")

    def v2_with_new_fields(h: dict[str, Any]) -> None:
        h.update(version=2, compression="zstd")

    refused(parties, _signed_edit(parties, data, v2_with_new_fields), work, "E_VERSION")
    refused(parties, _signed_edit(parties, data, lambda h: h.update(version=0)), work, "E_VERSION")


def test_magic_claims_a_future_version(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    refused(parties, b"SAXBNDL2" + data[8:], work, "E_VERSION")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content_alg", "cobblestone-256"),
        ("content_alg", "none"),
        ("signature_alg", "ecdsa-p256-sha1"),
        ("signature_alg", "rsa-pss-sha256"),  # an EC key may not be read as RSA
    ],
)
def test_unknown_or_mismatched_algorithm(
    parties: Parties, work: Path, field: str, value: str
) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    refused(
        parties,
        _signed_edit(parties, data, lambda h: h.update({field: value})),
        work,
        "E_ALGORITHM",
    )


def test_unknown_key_wrapping_algorithm(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])

    def edit(h: dict[str, Any]) -> None:
        h["recipients"][0]["key_alg"] = "rsa-pkcs1v15"

    refused(parties, _signed_edit(parties, data, edit), work, "E_ALGORITHM")


def test_key_wrapping_algorithm_swapped_for_the_recipients_key(
    parties: Parties, work: Path
) -> None:
    def edit(h: dict[str, Any]) -> None:
        r = h["recipients"][0]
        del r["epk"]
        r["key_alg"] = "rsa-oaep-sha256"
        r["wrapped_key"] = __import__("base64").b64encode(b"\1" * 384).decode()

    data = craft(parties, inner_stream([], manifest_for([])), header_edit=edit)
    refused(parties, data, work, "E_DECRYPT", verify_too=False)


# --- header strictness ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda h: json.dumps(h, indent=1).encode(), id="whitespace"),
        pytest.param(lambda h: json.dumps(h, sort_keys=False).encode(), id="unsorted-with-spaces"),
        pytest.param(lambda h: canonical_json(h)[:-1] + b',"kind":"data"}', id="duplicate-key"),
        pytest.param(lambda h: canonical_json({**h, "zz": 1}), id="unknown-field"),
        pytest.param(
            lambda h: canonical_json({k: v for k, v in h.items() if k != "kind"}),
            id="missing-field",
        ),
        pytest.param(
            lambda h: canonical_json({**h, "expires_at": h["created_at"]}),
            id="expires-not-after-created",
        ),
        pytest.param(
            lambda h: canonical_json({**h, "bundle_id": h["bundle_id"].upper()}),
            id="uppercase-uuid",
        ),
        pytest.param(
            lambda h: canonical_json({**h, "created_at": h["created_at"].replace("Z", "+00:00")}),
            id="time-offset",
        ),
        pytest.param(lambda h: canonical_json({**h, "version": True}), id="version-bool"),
        pytest.param(lambda h: canonical_json({**h, "recipients": []}), id="no-recipients"),
        pytest.param(
            lambda h: canonical_json({**h, "recipients": h["recipients"] * 2}), id="recipient-twice"
        ),
        pytest.param(
            lambda h: canonical_json({**h, "sender_chain": [h["sender_chain"][0] + "="]}),
            id="bad-base64",
        ),
        pytest.param(lambda h: canonical_json([h]), id="not-an-object"),
        pytest.param(lambda h: b"\xef\xbb\xbf" + canonical_json(h), id="utf8-bom"),
    ],
)
def test_non_canonical_or_malformed_header_even_if_signed(
    parties: Parties, work: Path, mangle: Callable[[dict[str, Any]], bytes]
) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    header = Parts.of(data).header_json()
    assert parties.sender.key is not None
    attacked = with_raw_header(data, mangle(header), key=parties.sender.key)
    refused(parties, attacked, work, {"E_FORMAT"})


def test_footer_chain_differs_from_header_chain(
    parties: Parties, work: Path, test_ca: CAFixture
) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    parts = Parts.of(data)
    other = parties.outsider.certificate.public_bytes(
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.DER
    )
    forged = Parts(parts.header, parts.ciphertext, parts.signature, other)
    refused(parties, forged.assemble(), work, "E_FORMAT")


def test_header_length_field_attacks(parties: Parties, work: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    refused(parties, data[:8] + struct.pack(">I", 0xFFFFFFFF) + data[12:], work, "E_LIMIT")
    refused(parties, data[:8] + struct.pack(">I", 0) + data[12:], work, "E_FORMAT")
    small = Limits(max_header_size=64)
    refused(parties, data, work, "E_LIMIT", limits=small)


def test_not_a_bundle_at_all(parties: Parties, work: Path) -> None:
    refused(parties, b"%PDF-1.7\n" + os.urandom(500), work, "E_FORMAT")
    data = seal_bytes(parties, [("a", b"x")])
    refused(parties, b"\0" + data, work, "E_FORMAT")


# --- a malicious sender: validly signed and encrypted, but lying inside ---------------------


def test_manifest_digest_lies(parties: Parties, work: Path) -> None:
    members = [("a.csv", b"real data")]
    manifest = manifest_for(members)
    manifest["members"][0]["sha256"] = hashlib.sha256(b"other data").hexdigest()
    data = craft(parties, inner_stream([(b"real data", None)], manifest))
    refused(parties, data, work, "E_MANIFEST", verify_too=False)


def test_manifest_size_lies(parties: Parties, work: Path) -> None:
    manifest = manifest_for([("a.csv", b"real data!")])
    data = craft(parties, inner_stream([(b"real data", None)], manifest))
    refused(parties, data, work, "E_MANIFEST", verify_too=False)


def test_manifest_member_count_lies(parties: Parties, work: Path) -> None:
    manifest = manifest_for([("a.csv", b"1")])
    data = craft(parties, inner_stream([(b"1", None), (b"2", None)], manifest))
    refused(parties, data, work, "E_MANIFEST", verify_too=False)


def test_inner_stream_shorter_than_its_count(parties: Parties, work: Path) -> None:
    manifest = manifest_for([("a.csv", b"1")])
    inner = inner_stream([(b"1", None)], manifest, count=2)
    data = craft(parties, inner)
    refused(parties, data, work, {"E_FORMAT", "E_LIMIT"}, verify_too=False)


def test_inner_stream_with_trailing_data(parties: Parties, work: Path) -> None:
    inner = inner_stream([(b"1", None)], manifest_for([("a.csv", b"1")])) + b"extra"
    refused(parties, craft(parties, inner), work, "E_FORMAT", verify_too=False)


def test_inner_stream_wrong_magic(parties: Parties, work: Path) -> None:
    inner = b"XXXX" + inner_stream([], manifest_for([]))[4:]
    refused(parties, craft(parties, inner), work, "E_FORMAT", verify_too=False)


def test_inner_stream_claims_too_many_members(parties: Parties, work: Path) -> None:
    inner = inner_stream([], manifest_for([]), count=10**9)
    refused(parties, craft(parties, inner), work, "E_LIMIT", verify_too=False)


def test_inner_stream_claims_a_huge_member(parties: Parties, work: Path) -> None:
    inner = inner_stream([(b"", 2**62)], manifest_for([]))
    refused(parties, craft(parties, inner), work, "E_LIMIT", verify_too=False)


def test_manifest_claims_a_huge_length(parties: Parties, work: Path) -> None:
    inner = INNER_MAGIC + struct.pack(">I", 0) + struct.pack(">I", 2**31) + b"{" * 100
    refused(parties, craft(parties, inner), work, "E_LIMIT", verify_too=False)


@pytest.mark.parametrize(
    "name",
    ["../escape.txt", "/etc/cron.d/x", "a/../../b", "..", ".bashrc", "sub\\..\\x", "con.txt",
     "nul\0byte", "bidi\u202egpj.exe", "e\u0301.txt"],  # the last one is not NFC
)  # fmt: skip
def test_hostile_member_name_in_manifest(
    parties: Parties, work: Path, tmp_path: Path, name: str
) -> None:
    """Path traversal and look-alike names from a malicious sender: nothing is written
    anywhere (the whole tmp tree is compared before and after)."""
    members = [(name, b"pwned")]
    data = craft(parties, inner_stream([(b"pwned", None)], manifest_for(members)))
    before = {str(p) for p in tmp_path.rglob("*")} | {str(work / "attack.bundle")}
    refused(parties, data, work, "E_MANIFEST", verify_too=False)
    assert {str(p) for p in tmp_path.rglob("*")} == before


def test_duplicate_member_names_in_manifest(parties: Parties, work: Path) -> None:
    members = [("Data.csv", b"1"), ("data.csv", b"2")]
    data = craft(parties, inner_stream([(b"1", None), (b"2", None)], manifest_for(members)))
    refused(parties, data, work, "E_MANIFEST", verify_too=False)


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(b'{"fields":{},"members":[]} ', id="trailing-space"),
        pytest.param(b'{"fields":{"x":1.5},"members":[]}', id="float"),
        pytest.param(b'{"fields":{},"members":[],"extra":1}', id="unknown-key"),
        pytest.param(b'{"members":[],"fields":{}}', id="unsorted"),
        pytest.param(b"[]", id="not-object"),
    ],
)
def test_malformed_manifest(parties: Parties, work: Path, manifest: bytes) -> None:
    data = craft(parties, inner_stream([], manifest))
    refused(parties, data, work, "E_MANIFEST", verify_too=False)


# --- the file changes between verification and decryption ---------------------------------


class _Swapping(io.RawIOBase):
    """Serves ``first`` until the reader seeks back to the start, then ``second``."""

    def __init__(self, first: bytes, second: bytes):
        self._current = io.BytesIO(first)
        self._second = second

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._current.tell()

    def readinto(self, buf: Any) -> int:
        return self._current.readinto(buf)

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos == 0 and whence == 0 and self._current.tell() > 0:
            self._current = io.BytesIO(self._second)
        return self._current.seek(pos, whence)


def test_file_swapped_between_verify_and_decrypt_by_an_insider(
    parties: Parties, work: Path
) -> None:
    """TOCTOU: an insider who knows the content key swaps in different content (same header,
    valid encryption) after the verify pass. The re-hashed signed region no longer matches."""
    data = seal_bytes(parties, [("a.csv", b"honest " * 100)])
    key = bundlegen.content_key_of(data, parties.recipient)
    parts = Parts.of(data)
    evil = [("a.csv", b"forged " * 100)]
    enc = Cobblestone128Encryptor(key, content_context(parts.header))
    inner = inner_stream([(evil[0][1], None)], manifest_for(evil, media_type="text/csv"))
    ct = enc.update(inner) + enc.finalize()
    assert len(ct) == len(parts.ciphertext)
    swapped = Parts(parts.header, ct, parts.signature, parts.chain).assemble()
    refused(parties, lambda: cast(BinaryIO, _Swapping(data, swapped)), work, "E_SIGNATURE")


def test_file_swapped_between_verify_and_decrypt_by_an_outsider(
    parties: Parties, work: Path
) -> None:
    data = seal_bytes(parties, [("a.csv", os.urandom(3 * CHUNK))])
    lay = layout(data)
    other = flip(data, lay.ct_start + CHUNK)
    refused(
        parties, lambda: cast(BinaryIO, _Swapping(data, other)), work, {"E_SIGNATURE", "E_DECRYPT"}
    )
    other_header = flip(data, 20)
    refused(parties, lambda: cast(BinaryIO, _Swapping(data, other_header)), work, "E_SIGNATURE")
