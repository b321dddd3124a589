"""pki.cadb: the hash-chained CA database and the integrity check every open runs.

Each tampering test edits ``ca.db`` (or ``certs/``) behind the CA's back the way a careless
admin, a bad restore or an intruder would, and asserts that the next open stops with E_CA_DB.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange_common.errors import CAError
from pki.ca import CertificateAuthority
from pki.cadb import CADatabase, CertRecord, _event_hash
from pki.identity import CertSerial, DeptCode
from tests.conftest import NOW, CAFixture
from tests.pki.certgen import DAY
from tests.pki.test_cli import assert_one_line_error, run_cli, snapshot


@contextmanager
def raw_db(ca_dir: Path) -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection to the CA database: the tamperer's tool."""
    with closing(sqlite3.connect(ca_dir / "ca.db", isolation_level=None)) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


@dataclass(frozen=True)
class Populated:
    """A closed CA directory with: MZ330100 issued (serial ``a``) and renewed, RS330100 issued
    and revoked (serial ``c``), and a CRL signed after that."""

    dir: Path
    a: str
    c: str


@pytest.fixture
def populated(test_ca: CAFixture) -> Populated:
    a = test_ca.issue("MZ330100", now=NOW)
    test_ca.issue("MZ330100", renew=True, now=NOW + DAY)
    c = test_ca.issue("RS330100", now=NOW + 2 * DAY)
    test_ca.ca.revoke(serial=c.record.serial, now=NOW + 3 * DAY)
    test_ca.ca.crl(now=NOW + 3 * DAY)
    test_ca.ca.close()  # closing again at fixture teardown is harmless
    return Populated(test_ca.dir, a.record.serial, c.record.serial)


def _open(ca_dir: Path) -> CertificateAuthority:
    ca = CertificateAuthority.open(ca_dir)
    ca.close()
    return ca


def test_clean_database_passes_and_counts_events(populated: Populated) -> None:
    ca = CertificateAuthority.open(populated.dir)
    try:
        # init, crl (from init), issue x3, revoke, crl
        assert ca.db.check_integrity(populated.dir / "certs") == 7
    finally:
        ca.close()
    with raw_db(populated.dir) as conn:
        actions = [r["action"] for r in conn.execute("SELECT action FROM events ORDER BY seq")]
    assert actions == ["init", "crl", "issue", "issue", "issue", "revoke", "crl"]


def _delete_certificate_row(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute("DELETE FROM certificates WHERE serial = ?", (fx.a,))


def _edit_event_detail(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE events SET detail = replace(detail, 'MZ330100', 'MZ999999') WHERE seq = 3"
        )


def _delete_middle_event(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute("DELETE FROM events WHERE seq = 4")


def _stray_certificate_file(fx: Populated) -> None:
    src = fx.dir / "certs" / f"{fx.a}.pem"
    (fx.dir / "certs" / "ABCDEF0123.pem").write_bytes(src.read_bytes())


def _edit_event_and_rehash(fx: Populated) -> None:
    """A careful tamperer recomputes the edited event's own hash: the next event catches it."""
    with raw_db(fx.dir) as conn:
        ev = conn.execute("SELECT * FROM events WHERE seq = 3").fetchone()
        detail = ev["detail"].replace("MZ330100", "MZ999999")
        digest = _event_hash(ev["prev_hash"], 3, ev["at"], ev["action"], ev["serial"], detail)
        conn.execute("UPDATE events SET detail = ?, hash = ? WHERE seq = 3", (detail, digest))


def _unrevoke(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL WHERE serial = ?",
            (fx.c,),
        )


def _revoke_without_event(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = 'keyCompromise' "
            "WHERE serial = ?",
            ("2026-11-30T00:00:00+00:00", fx.a),
        )


def _edit_revocation_reason(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE certificates SET revocation_reason = 'superseded' WHERE serial = ?",
            (fx.c,),
        )


def _row_without_issue_event(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute(
            "INSERT INTO certificates SELECT 'ABCDEF0123', issuer, dept, name, role, "
            "'00' || fingerprint, not_before, not_after, issued_at, NULL, NULL, NULL, pem "
            "FROM certificates WHERE serial = ?",
            (fx.a,),
        )


def _edit_fingerprint(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        (fp,) = conn.execute(
            "SELECT fingerprint FROM certificates WHERE serial = ?", (fx.a,)
        ).fetchone()
        edited = ("1" if fp[0] == "0" else "0") + fp[1:]  # always a different value
        conn.execute("UPDATE certificates SET fingerprint = ? WHERE serial = ?", (edited, fx.a))


def _swap_pem(fx: Populated) -> None:
    """Replace a row's stored certificate with another department's."""
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE certificates SET pem = (SELECT pem FROM certificates WHERE serial = ?) "
            "WHERE serial = ?",
            (fx.c, fx.a),
        )


def _edit_dept(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute("UPDATE certificates SET dept = 'GA330100' WHERE serial = ?", (fx.a,))


def _extend_validity(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE certificates SET not_after = '2099-01-01T00:00:00+00:00' WHERE serial = ?",
            (fx.a,),
        )


def _edit_name(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute("UPDATE certificates SET name = '假冒部门' WHERE serial = ?", (fx.a,))


def _move_to_other_crl(fx: Populated) -> None:
    """Relabel a revoked certificate's issuer so that its CRL would no longer list it."""
    with raw_db(fx.dir) as conn:
        conn.execute(
            "UPDATE certificates SET issuer = 'intermediate' WHERE serial = ?",
            (fx.c,),
        )


def _garbage_timestamp(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute("UPDATE certificates SET issued_at = 'yesterday' WHERE serial = ?", (fx.a,))


def _roll_back_crl_number(fx: Populated) -> None:
    """A lower CRL number would let the next CRL reuse a number with different contents."""
    with raw_db(fx.dir) as conn:
        conn.execute("UPDATE crl_numbers SET number = 1")


def _delete_last_crl_event(fx: Populated) -> None:
    with raw_db(fx.dir) as conn:
        conn.execute("DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")


TAMPERING: list[tuple[str, Callable[[Populated], None], str]] = [
    ("deleted-certificate-row", _delete_certificate_row, "record is gone"),
    ("edited-event", _edit_event_detail, "event 3 was altered"),
    ("deleted-middle-event", _delete_middle_event, "event 4 is missing"),
    ("certificate-file-without-row", _stray_certificate_file, "ABCDEF0123.pem has no record"),
    ("edited-event-rehashed", _edit_event_and_rehash, "event 4 does not follow event 3"),
    ("unrevoked-row", _unrevoke, "revocation state"),
    ("revoked-without-event", _revoke_without_event, "revocation state"),
    ("edited-revocation-reason", _edit_revocation_reason, "revocation state"),
    ("row-without-issue-event", _row_without_issue_event, "no issue event"),
    ("edited-fingerprint", _edit_fingerprint, "record was altered"),
    ("swapped-certificate", _swap_pem, "record was altered"),
    ("edited-department", _edit_dept, "record was altered"),
    ("extended-validity", _extend_validity, "record was altered"),
    ("edited-name", _edit_name, "record was altered"),
    ("moved-to-other-crl", _move_to_other_crl, "record was altered"),
    ("garbage-timestamp", _garbage_timestamp, "unreadable"),
    ("rolled-back-crl-number", _roll_back_crl_number, "CRL numbers"),
    ("deleted-last-crl-event", _delete_last_crl_event, "CRL numbers"),
]


@pytest.mark.parametrize(
    ("tamper", "message"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
def test_tampering_stops_the_ca(
    populated: Populated, tamper: Callable[[Populated], None], message: str
) -> None:
    tamper(populated)
    with pytest.raises(CAError) as info:
        _open(populated.dir)
    assert info.value.code == "E_CA_DB"
    assert message in info.value.message
    # Every command refuses, with one clear line and exit 4, and changes nothing further.
    before = snapshot(populated.dir)
    commands: list[list[str | Path]] = [
        ["list", "--ca-dir", populated.dir],
        ["issue", "--ca-dir", populated.dir, "--dept", "NEW1", "--name", "x",
         "--out", populated.dir.parent / "out"],
        ["crl", "--ca-dir", populated.dir, "--out", populated.dir.parent / "crl.pem"],
    ]  # fmt: skip
    for args in commands:
        assert_one_line_error(run_cli(*args), 4, "E_CA_DB")
    assert snapshot(populated.dir) == before


def test_garbage_database_file(test_ca: CAFixture) -> None:
    test_ca.ca.close()
    (test_ca.dir / "ca.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CAError) as info:
        _open(test_ca.dir)
    assert info.value.code == "E_CA_DB"
    assert_one_line_error(run_cli("list", "--ca-dir", test_ca.dir), 4, "E_CA_DB")


def test_damaged_config(test_ca: CAFixture) -> None:
    test_ca.ca.close()
    (test_ca.dir / "ca.json").write_text("{}")
    with pytest.raises(CAError) as info:
        _open(test_ca.dir)
    assert info.value.code == "E_CA_DB"


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = CADatabase(tmp_path / "ca.db")
    try:
        with pytest.raises(RuntimeError), db.transaction() as conn:
            db.append_event(conn, NOW, "init", None, {})
            raise RuntimeError("half way")
        assert db.check_integrity() == 0
        with db.transaction() as conn:
            db.append_event(conn, NOW, "init", None, {})
        assert db.check_integrity() == 1
    finally:
        db.close()


def test_crl_numbers_are_per_issuer(tmp_path: Path) -> None:
    db = CADatabase(tmp_path / "ca.db")
    try:
        with db.transaction() as conn:
            got = [db.next_crl_number(conn, label, NOW) for label in ("root", "inter", "root")]
        assert got == [1, 1, 2]
        assert db.check_integrity() == 3
    finally:
        db.close()


# --- records ----------------------------------------------------------------------------------


def _record(**kw: object) -> CertRecord:
    base: dict[str, object] = {
        "serial": CertSerial("1A"),
        "issuer": "root",
        "dept": DeptCode("MZ1"),
        "name": "民政",
        "role": "department",
        "fingerprint": "ab" * 32,
        "not_before": NOW,
        "not_after": NOW + 10 * DAY,
        "issued_at": NOW,
        "renewal_of": None,
        "revoked_at": None,
        "revocation_reason": None,
        "pem": "",
    }
    base.update(kw)
    return CertRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "at", "state", "live"),
    [
        (_record(), NOW + DAY, "valid", True),
        (_record(), NOW + 10 * DAY, "valid", True),  # the last second still counts
        (_record(), NOW + 10 * DAY + dt.timedelta(seconds=1), "expired", False),
        (_record(), NOW - DAY, "not-yet-valid", True),
        (_record(revoked_at=NOW, revocation_reason="superseded"), NOW + DAY, "revoked", False),
        (_record(revoked_at=NOW), NOW + 20 * DAY, "revoked", False),
    ],
)
def test_record_state(record: CertRecord, at: dt.datetime, state: str, live: bool) -> None:
    assert record.state(at) == state
    assert record.is_live(at) is live
    assert record.as_json(at)["state"] == state


def test_record_json_is_plain_and_utc() -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    rec = _record(issued_at=NOW.astimezone(shanghai), revoked_at=NOW, revocation_reason="x")
    data = rec.as_json(NOW)
    assert data["issued_at"] == "2026-11-22T08:00:00+00:00"
    assert data["revoked_at"] == "2026-11-22T08:00:00+00:00"
    assert data["name"] == "民政"
    assert data["fingerprint_sha256"] == "ab" * 32
