"""pki.bundle: seal / verify / open round trips, recipients, limits, names, streams.

Attacks (tampering, truncation, replayed or re-addressed bundles) are in
tests/adversarial/test_bundle_attacks.py; the header fuzzing in test_bundle_fuzz.py there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import logging
import os
import unicodedata
import uuid
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest

from exchange_common.errors import InputError
from exchange_common.limits import DEFAULT_LIMITS, Limits
from pki._bundle_format import canonical_json
from pki.bundle import (
    BundleError,
    BundleKind,
    Member,
    OpenedBundle,
    SealResult,
    ciphertext_size,
    open_bundle,
    seal,
    seal_to_file,
    sealed_header,
    signature_parts,
    verify,
)
from pki.ca import IssuedCertificate
from pki.keys import KeyType, fingerprint
from tests.conftest import CAFixture
from tests.pki import bundlegen
from tests.pki.bundlegen import CHUNK, Parties, flip, layout, make_parties, seal_bytes


@pytest.fixture
def parties(test_ca: CAFixture) -> Parties:
    return make_parties(test_ca)


@pytest.fixture
def rsa_parties(inter_ca: CAFixture) -> Parties:
    return make_parties(inter_ca, rsa=True)


def _open(
    parties: Parties,
    data: bytes,
    out: Path,
    who: IssuedCertificate | None = None,
    **kw: Any,
) -> OpenedBundle:
    who = who or parties.recipient
    assert who.key is not None
    src = out.parent / f"{out.name}.bundle"
    src.write_bytes(data)
    return open_bundle(
        src,
        out,
        recipient_key=who.key,
        recipient_cert=who.certificate,
        trust=parties.trust,
        now=parties.now,
        **kw,
    )


def _roundtrip(
    parties: Parties, tmp_path: Path, members: list[tuple[str, bytes]], **kw: Any
) -> tuple[bytes, OpenedBundle]:
    data = seal_bytes(parties, members, **kw)
    out = tmp_path / "out"
    opened = _open(parties, data, out)
    got = {p.name: p.read_bytes() for p in out.iterdir()}
    assert got == dict(members)
    assert [m.name for m in opened.manifest.members] == [n for n, _ in members]
    return data, opened


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 15, CHUNK - 17, CHUNK - 16, CHUNK - 15, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK,
     2 * CHUNK - 16, 3 * CHUNK + 7],
)  # fmt: skip
def test_roundtrip_sizes_around_chunk_boundaries(
    parties: Parties, tmp_path: Path, size: int
) -> None:
    # The member starts 16 bytes into the inner stream (magic, count, size), so CHUNK - 16
    # makes it end exactly on a Cobblestone chunk boundary.
    payload = os.urandom(size)
    _data, opened = _roundtrip(parties, tmp_path, [("m.bin", payload)])
    member = opened.manifest.members[0]
    assert member.size == size
    assert member.sha256 == hashlib.sha256(payload).hexdigest()


def test_inner_stream_ending_exactly_on_a_chunk_boundary(parties: Parties, tmp_path: Path) -> None:
    # Pick the member size so magic + count + size + data + manifest length + manifest fill
    # exactly two chunks: the last chunk is then an empty final chunk.
    name = "x.bin"
    size = 2 * CHUNK - 100
    for _ in range(5):
        manifest = bundlegen.manifest_for([(name, b"\0" * size)])
        manifest["members"][0]["media_type"] = "application/octet-stream"
        m_len = len(canonical_json(manifest))
        size = 2 * CHUNK - (4 + 4 + 8 + 4 + m_len)
    payload = os.urandom(size)
    data = seal_bytes(parties, [(name, payload)])
    lay = layout(data)
    inner_len = 4 + 4 + 8 + size + 4 + m_len
    assert inner_len % CHUNK == 0
    assert lay.signed_length - lay.ct_start == ciphertext_size(inner_len)
    out = tmp_path / "out"
    _open(parties, data, out)
    assert (out / name).read_bytes() == payload


def test_roundtrip_with_small_io_blocks(parties: Parties, tmp_path: Path) -> None:
    limits = Limits(io_block_size=4096)
    members = [(f"f{n}.bin", os.urandom(n)) for n in (4095, 4096, 4097, 3 * 4096, CHUNK + 5)]
    data = seal_bytes(parties, members, limits=limits)
    out = tmp_path / "out"
    _open(parties, data, out, limits=limits)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == dict(members)


def test_roundtrip_many_members(parties: Parties, tmp_path: Path) -> None:
    members = [(f"part-{i:03d}.csv", os.urandom(i * 37)) for i in range(200)]
    _roundtrip(parties, tmp_path, members)


def test_roundtrip_no_members_only_fields(parties: Parties, tmp_path: Path) -> None:
    fields = {"reason_code": "E_SIGNATURE", "upload": "u-1", "count": 3, "ok": False}
    data = seal_bytes(parties, [], fields=fields, kind=BundleKind.RECEIPT)
    opened = _open(parties, data, tmp_path / "out")
    assert opened.manifest.fields == fields
    assert opened.manifest.members == ()
    assert list((tmp_path / "out").iterdir()) == []


def test_roundtrip_chinese_names_contents_and_fields(parties: Parties, tmp_path: Path) -> None:
    csv = "姓名,身份证号,救助类型\n张三,11010519491231002X,低保\n李四,440524188001010014,特困\n"
    members = [
        ("低保对象名单.csv", csv.encode("utf-8")),
        ("核对报告（2026年11月）.txt", "核对结果：无异常。".encode()),
        ("GB18030编码.csv", csv.encode("gb18030")),
    ]
    fields = {"业务类型": "低保", "查询范围": "2025/01/01-2026/10/31", "人数": 2}
    data, opened = _roundtrip(parties, tmp_path, members, fields=fields, kind="query")
    assert opened.manifest.fields == fields
    assert opened.header.kind is BundleKind.QUERY
    # The header is cleartext but carries no member names: they are in the encrypted manifest.
    assert "低保".encode() not in bundlegen.Parts.of(data).header


def test_member_names_are_nfc_normalised(parties: Parties, tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "résumé.txt")
    assert decomposed != "résumé.txt"
    data = seal_bytes(parties, [(decomposed, b"x")])
    _open(parties, data, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["résumé.txt"]


def test_multiple_recipients_each_can_open_outsider_cannot(
    rsa_parties: Parties, tmp_path: Path
) -> None:
    p = rsa_parties
    assert p.rsa_recipient is not None
    payload = "多方共享的数据".encode() * 1000
    data = seal_bytes(p, [("共享.csv", payload)], recipients=[p.recipient, p.rsa_recipient])
    header = bundlegen.Parts.of(data).header_json()
    assert sorted(r["key_alg"] for r in header["recipients"]) == [
        "ecdh-p256-hkdf-sha256-aeskw",
        "rsa-oaep-sha256",
    ]
    for i, who in enumerate([p.recipient, p.rsa_recipient]):
        out = tmp_path / f"out{i}"
        _open(p, data, out, who)
        assert (out / "共享.csv").read_bytes() == payload
    with pytest.raises(BundleError) as info:
        _open(p, data, tmp_path / "outsider", p.outsider)
    assert info.value.code == "E_RECIPIENT"
    assert not (tmp_path / "outsider").exists()


def test_rsa_sender(test_ca: CAFixture, tmp_path: Path) -> None:
    p = make_parties(test_ca)
    rsa_sender = test_ca.issue("CZ330100", "杭州市财政局", key_type=KeyType.RSA)
    data = seal_bytes(p, [("a.txt", b"rsa-signed")], sender=rsa_sender)
    assert bundlegen.Parts.of(data).header_json()["signature_alg"] == "rsa-pss-sha256"
    vb = verify(io.BytesIO(data), p.trust, now=p.now)
    assert vb.sender.code == "CZ330100"
    _open(p, data, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"rsa-signed"


def test_intermediate_chain_is_carried_and_verified(inter_ca: CAFixture) -> None:
    p = make_parties(inter_ca)
    data = seal_bytes(p, [("a", b"x")])
    vb = verify(io.BytesIO(data), p.trust, now=p.now)
    assert len(bundlegen.Parts.of(data).header_json()["sender_chain"]) == 2
    assert len(vb.sender.chain) == 3  # leaf, intermediate, root


# --- verify --------------------------------------------------------------------------------


def test_verify_needs_no_private_key_and_reports_sender(parties: Parties, tmp_path: Path) -> None:
    bundle = tmp_path / "b.bundle"
    res = seal_to_file(
        [Member("a.csv", io.BytesIO(b"1,2\n"), size=4)],
        bundle,
        signer_key=parties.key(parties.sender),
        signer_chain=parties.sender.chain,
        recipients=[parties.recipient.certificate],
        kind="data",
        now=parties.now,
    )
    vb = verify(bundle, parties.trust, now=parties.now)
    assert vb.sender.code == "MZ330100"
    assert vb.sender.name == "杭州市民政局"
    assert vb.bundle_id == res.bundle_id
    assert vb.sha256 == res.sha256 == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert vb.signed_length == res.signed_length
    assert vb.length == res.length == bundle.stat().st_size
    assert vb.header.recipient(fingerprint(parties.recipient.certificate)) is not None
    assert vb.header.created_at == parties.now
    assert vb.header.expires_at == parties.now + dt.timedelta(days=30)


class _OneWay(io.RawIOBase):
    """A non-seekable stream (a pipe, a socket)."""

    def __init__(self, data: bytes):
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        chunk = self._inner.read(min(len(buf), 777))  # short reads on purpose
        buf[: len(chunk)] = chunk
        return len(chunk)


def test_verify_streams_from_a_non_seekable_source(parties: Parties) -> None:
    data = seal_bytes(parties, [("a.bin", os.urandom(3 * CHUNK + 11))])
    vb = verify(cast(BinaryIO, _OneWay(data)), parties.trust, now=parties.now)
    assert vb.sha256 == hashlib.sha256(data).hexdigest()


def test_verify_progress_counts_every_byte(parties: Parties) -> None:
    data = seal_bytes(parties, [("a.bin", os.urandom(50_000))])
    seen: list[int] = []
    verify(io.BytesIO(data), parties.trust, now=parties.now, progress=seen.append)
    assert sum(seen) == len(data)


def test_verify_at_expiry_boundary(parties: Parties) -> None:
    data = seal_bytes(parties, [("a", b"x")], ttl=dt.timedelta(days=3))
    at = parties.now + dt.timedelta(days=3)
    trust = parties.ca.trust(at)
    verify(io.BytesIO(data), trust, now=at)  # exactly at expires_at: still valid
    with pytest.raises(BundleError) as info:
        verify(io.BytesIO(data), trust, now=at + dt.timedelta(seconds=1))
    assert info.value.code == "E_EXPIRED"
    assert "bundle (not the certificate) expired" in (info.value.detail or "")
    assert str(info.value) == "bundle rejected: bundle has expired (E_EXPIRED)"


def test_clock_skew_allows_five_minutes(parties: Parties) -> None:
    data = seal_bytes(parties, [("a", b"x")], now=parties.now + dt.timedelta(minutes=5))
    verify(io.BytesIO(data), parties.trust, now=parties.now)


def test_error_message_is_opaque_and_detail_is_logged(
    parties: Parties, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(seal_bytes(parties, [("secret-name.csv", b"x" * 100)]))
    data[layout(bytes(data)).ct_start + 80] ^= 1
    with caplog.at_level(logging.WARNING, logger="pki.bundle"), pytest.raises(BundleError) as info:
        verify(io.BytesIO(bytes(data)), parties.trust, now=parties.now)
    assert info.value.code == "E_SIGNATURE"
    assert info.value.message == "bundle rejected: signature invalid"
    assert info.value.detail and "sender's key" in info.value.detail
    assert "E_SIGNATURE" in caplog.text


def test_signature_parts_matches_layout(parties: Parties, tmp_path: Path) -> None:
    data = seal_bytes(parties, [("a", b"x" * 1000)])
    path = bundlegen.write(tmp_path / "b", data)
    parts = signature_parts(path)
    lay = layout(data)
    assert parts.signed_length == lay.signed_length
    assert parts.signature == data[lay.sig_start : lay.chain_start]
    assert b"".join(parts.chain) == data[lay.chain_start : lay.footer_start]


def test_sealed_header_tells_a_bundle_from_any_other_file(
    parties: Parties, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = seal_bytes(parties, [("a", b"x" * 1000)])
    header = sealed_header(bundlegen.write(tmp_path / "b", data))
    assert header is not None and header.kind == "data"
    assert sealed_header(bundlegen.write(tmp_path / "cut", data[:-1])) is None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pki.bundle"):
        assert sealed_header(bundlegen.write(tmp_path / "t.csv", b"id,name\n1,x\n")) is None
        assert sealed_header(tmp_path / "missing") is None
    assert caplog.text == ""  # a folder of other files is scanned quietly


def test_ciphertext_size_formula(parties: Parties) -> None:
    for n in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK):
        from cryptography.cobblestone import Cobblestone128Encryptor

        enc = Cobblestone128Encryptor(b"k" * 16, b"ctx")
        assert len(enc.update(b"a" * n) + enc.finalize()) == ciphertext_size(n)


# --- open ----------------------------------------------------------------------------------


def test_open_into_existing_folder_adds_members(parties: Parties, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    data = seal_bytes(parties, [("a.txt", b"A"), ("b.txt", b"B")])
    opened = _open(parties, data, out)
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "keep.txt"]
    assert opened.paths == (out / "a.txt", out / "b.txt")
    assert (out / "a.txt").stat().st_mode & 0o777 == 0o600


def test_open_never_overwrites_and_writes_nothing_then(parties: Parties, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.txt").write_text("mine")
    data = seal_bytes(parties, [("a.txt", b"A"), ("b.txt", b"B")])
    with pytest.raises(InputError) as info:
        _open(parties, data, out)
    assert info.value.code == "E_EXISTS"
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert (out / "b.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_open_with_mismatched_key_is_input_error(parties: Parties, tmp_path: Path) -> None:
    data = seal_bytes(parties, [("a", b"x")])
    bundle = bundlegen.write(tmp_path / "b", data)
    with pytest.raises(InputError) as info:
        open_bundle(
            bundle,
            tmp_path / "out",
            recipient_key=parties.key(parties.outsider),
            recipient_cert=parties.recipient.certificate,
            trust=parties.trust,
            now=parties.now,
        )
    assert info.value.code == "E_KEY_MISMATCH"
    assert not (tmp_path / "out").exists()


def test_open_progress_covers_both_passes(parties: Parties, tmp_path: Path) -> None:
    data = seal_bytes(parties, [("a", os.urandom(70_000))])
    seen: list[int] = []
    _open(parties, data, tmp_path / "out", progress=seen.append)
    lay = layout(data)
    assert sum(seen) == len(data) + lay.signed_length


# --- seal inputs ---------------------------------------------------------------------------


def _seal(parties: Parties, members: list[Member], **kw: Any) -> SealResult:
    return seal(
        members,
        io.BytesIO(),
        signer_key=parties.key(parties.sender),
        signer_chain=parties.sender.chain,
        recipients=kw.pop("recipients", [parties.recipient.certificate]),
        kind=kw.pop("kind", "data"),
        now=parties.now,
        **kw,
    )


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", ".hidden", "a/b", "../x", "a\\b", "nul\0.txt", "tab\t.txt",
     "evil\u202etxt.exe", "zero\u200bwidth", "CON", "com1.txt", "trailing.", "trailing ",
     "colon:name", "q?.txt", "x" * 256, "长" * 86],
)  # fmt: skip
def test_seal_refuses_unsafe_member_names(parties: Parties, name: str) -> None:
    with pytest.raises(InputError) as info:
        _seal(parties, [Member(name, io.BytesIO(b""), size=0)])
    assert info.value.code == "E_NAME"


def test_seal_accepts_long_chinese_name_within_255_bytes(parties: Parties) -> None:
    _seal(parties, [Member("长" * 85, io.BytesIO(b""), size=0)])  # 255 UTF-8 bytes


def test_seal_refuses_duplicate_names_case_insensitively(parties: Parties) -> None:
    with pytest.raises(InputError) as info:
        _seal(
            parties,
            [
                Member("Data.csv", io.BytesIO(b""), size=0),
                Member("data.CSV", io.BytesIO(b""), size=0),
            ],
        )
    assert info.value.code == "E_NAME"


def test_seal_refuses_stream_shorter_or_longer_than_declared(parties: Parties) -> None:
    for data, size in ((b"abc", 4), (b"abcde", 4)):
        with pytest.raises(InputError) as info:
            _seal(parties, [Member("a", io.BytesIO(data), size=size)])
        assert info.value.code == "E_SIZE_CHANGED"


def test_seal_takes_size_of_seekable_stream_and_path(parties: Parties, tmp_path: Path) -> None:
    f = tmp_path / "file.csv"
    f.write_bytes(b"a,b\n" * 10)
    stream = io.BytesIO(b"skip" + b"payload")
    stream.seek(4)
    res = _seal(parties, [Member("file.csv", f), Member("s.bin", stream)])
    sizes = [(m.name, m.size, m.media_type) for m in res.manifest.members]
    assert sizes == [("file.csv", 40, "text/csv"), ("s.bin", 7, "application/octet-stream")]


def test_seal_to_file_failure_leaves_nothing(parties: Parties, tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    out = folder / "b.bundle"
    with pytest.raises(InputError):
        seal_to_file(
            [Member("a", io.BytesIO(b"short"), size=10)],
            out,
            signer_key=parties.key(parties.sender),
            signer_chain=parties.sender.chain,
            recipients=[parties.recipient.certificate],
            kind="data",
            now=parties.now,
        )
    assert list(folder.iterdir()) == []


def test_seal_to_file_refuses_to_overwrite(parties: Parties, tmp_path: Path) -> None:
    out = tmp_path / "b.bundle"
    out.write_bytes(b"old")
    kw: dict[str, Any] = dict(
        signer_key=parties.key(parties.sender),
        signer_chain=parties.sender.chain,
        recipients=[parties.recipient.certificate],
        kind="data",
        now=parties.now,
    )
    with pytest.raises(InputError) as info:
        seal_to_file([], out, **kw)
    assert info.value.code == "E_EXISTS"
    assert out.read_bytes() == b"old"
    seal_to_file([], out, overwrite=True, **kw)
    verify(out, parties.trust, now=parties.now)


def test_seal_refuses_bad_inputs(parties: Parties) -> None:
    cert = parties.recipient.certificate
    cases: list[tuple[dict[str, object], str]] = [
        ({"recipients": []}, "E_INPUT"),
        ({"recipients": [cert, cert]}, "E_INPUT"),
        ({"kind": "letter"}, "E_INPUT"),
        ({"fields": {"amount": 1.5}}, "E_INPUT"),
        ({"ttl": dt.timedelta(0)}, "E_INPUT"),
    ]
    for kw, code in cases:
        with pytest.raises(InputError) as info:
            _seal(parties, [], **kw)
        assert info.value.code == code, kw
    with pytest.raises(InputError) as info:
        seal(
            [],
            io.BytesIO(),
            signer_key=parties.key(parties.outsider),
            signer_chain=parties.sender.chain,
            recipients=[cert],
            kind="data",
            now=parties.now,
        )
    assert info.value.code == "E_KEY_MISMATCH"


def test_injected_rng_fixes_bundle_id_and_content_key(parties: Parties) -> None:
    counter = iter(range(10**6))

    def rng(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    res = _seal(parties, [], rng=rng)
    assert res.bundle_id == uuid.UUID(bytes=b"\0" * 16, version=4)
    explicit = uuid.UUID("6f1c1a52-7d1e-4c43-9d0e-3f43d8b1a7a0")
    assert _seal(parties, [], bundle_id=explicit).bundle_id == explicit


# --- limits --------------------------------------------------------------------------------


def test_limits_object_is_validated() -> None:
    with pytest.raises(ValueError):
        Limits(max_members=0)
    with pytest.raises(ValueError):
        Limits(io_block_size=100)
    assert dataclasses.replace(DEFAULT_LIMITS, max_members=5).max_members == 5


@pytest.mark.parametrize(
    "limits",
    [
        Limits(max_members=2),
        Limits(max_member_size=99),
        Limits(max_manifest_size=200),
        Limits(max_total_size=4000),
        Limits(max_recipients=1),
        Limits(max_header_size=500),
        Limits(max_chain_length=1),
    ],
    ids=lambda lim: next(
        f.name
        for f in dataclasses.fields(lim)
        if getattr(lim, f.name) != getattr(DEFAULT_LIMITS, f.name)
    ),
)
def test_limits_enforced_on_seal_and_on_read(
    inter_ca: CAFixture, tmp_path: Path, limits: Limits
) -> None:
    p = make_parties(inter_ca)
    members = [(f"m{i}", b"x" * 100) for i in range(3)]
    recipients = [p.recipient, p.outsider]
    with pytest.raises(InputError) as seal_info:
        seal_bytes(p, members, recipients=recipients, limits=limits)
    assert seal_info.value.code == "E_LIMIT"
    # A bundle made under the default limits is refused by a reader with the tighter ones.
    data = seal_bytes(p, members, recipients=recipients)
    with pytest.raises(BundleError) as info:
        _open(p, data, tmp_path / "out", limits=limits)
    assert info.value.code == "E_LIMIT"
    assert not (tmp_path / "out").exists()


class _Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        raise OSError(5, "Input/output error")


def test_seal_read_error_is_input_error(parties: Parties) -> None:
    with pytest.raises(InputError) as info:
        _seal(parties, [Member("a.bin", cast(BinaryIO, _Failing()), size=10)])
    assert info.value.code == "E_IO"


# --- small and large opens, scratch opens ------------------------------------------------------


@pytest.mark.parametrize("size", [1000, (1 << 20) + 12345])
def test_small_bundles_hash_inline_large_ones_on_threads_with_one_result(
    parties: Parties, tmp_path: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below about 1 MiB of content the digests run inline (no threads started per bundle);
    above, on helper threads. Either way the members and the checks are the same, and a
    flipped byte in the content is refused."""
    from pki.bundle import _streams

    started: list[bool] = []
    real = _streams._hash_threads

    def spy(threaded: bool = True) -> Any:
        started.append(threaded)
        return real(threaded)

    monkeypatch.setattr("pki.bundle.opening._hash_threads", spy)
    payload = os.urandom(size)
    data, _opened = _roundtrip(parties, tmp_path, [("m.bin", payload)])
    assert started == [size > (1 << 20)]
    with pytest.raises(BundleError) as info:
        lay = layout(data)  # a byte in the middle of the ciphertext
        _open(parties, flip(data, (lay.ct_start + lay.signed_length) // 2), tmp_path / "tampered")
    assert info.value.code in {"E_SIGNATURE", "E_DECRYPT"}
    assert not (tmp_path / "tampered").exists()


def test_scratch_open_skips_fsync_and_places_the_same_members(
    parties: Parties, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``durable=False`` (the node's review copy) places the same members, all at once, with
    no fsync; the default open fsyncs every member file and folder."""
    import pki.bundle.opening as opening

    members = [("a.csv", "身份证号,姓名\n".encode()), ("b.bin", os.urandom(70_000))]
    data = seal_bytes(parties, members)
    synced: list[object] = []
    real_fsync = os.fsync
    monkeypatch.setattr(opening.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(opening, "fsync_dir", lambda path: synced.append(path))
    _open(parties, data, tmp_path / "durable")
    assert len(synced) >= len(members) + 1
    synced.clear()
    _open(parties, data, tmp_path / "scratch", durable=False)
    assert synced == []
    for name, body in members:
        assert (tmp_path / "scratch" / name).read_bytes() == body
        assert (tmp_path / "durable" / name).read_bytes() == body


def test_open_with_a_prior_verification_refuses_a_file_swapped_since(
    parties: Parties, tmp_path: Path
) -> None:
    """The node opens what it verified moments before without a second verification pass;
    a verification of another bundle, or a file changed since, is refused and nothing is
    placed."""
    assert parties.recipient.key is not None
    first = seal_bytes(parties, [("a.csv", b"id\n1\n")])
    other = seal_bytes(parties, [("a.csv", b"id\n2\n")])
    src = tmp_path / "in.bundle"
    src.write_bytes(first)
    checked = verify(src, parties.trust, now=parties.now)

    def open_with(name: str) -> OpenedBundle:
        return open_bundle(
            src,
            tmp_path / name,
            recipient_key=parties.recipient.key,  # type: ignore[arg-type]
            recipient_cert=parties.recipient.certificate,
            trust=parties.trust,
            now=parties.now,
            verified=checked,
        )

    opened = open_with("ok")
    assert (tmp_path / "ok" / "a.csv").read_bytes() == b"id\n1\n"
    assert opened.verified is checked
    src.write_bytes(other)  # swapped after the verification: another, validly signed bundle
    with pytest.raises(BundleError) as info:
        open_with("swapped")
    assert info.value.code == "E_SIGNATURE"
    assert not (tmp_path / "swapped").exists()
    lay = layout(first)
    src.write_bytes(flip(first, (lay.ct_start + lay.signed_length) // 2))  # or changed in place
    with pytest.raises(BundleError) as info:
        open_with("changed")
    assert info.value.code in {"E_SIGNATURE", "E_DECRYPT"}
    assert not (tmp_path / "changed").exists()
