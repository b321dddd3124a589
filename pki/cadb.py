"""The CA database: every certificate issued, every revocation, every CRL number.

It lives in ``<ca-dir>/ca.db`` (SQLite, ``synchronous=FULL``). It must never lose a record
silently, so besides the tables it keeps an append-only event log in which each event carries
the SHA-256 of the previous one (a hash chain). :meth:`CADatabase.check_integrity` walks that
chain and cross-checks it against the certificate table and the ``certs/`` folder; it runs on
every open, so a deleted or edited row, a row lost to a restored backup while its certificate
file survived, or a certificate file with no row stops the CA with ``E_CA_DB`` instead of
issuing on top of a damaged history.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from exchange_common.errors import CAError
from pki.identity import CertSerial, DeptCode

__all__ = ["CADatabase", "CertRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    dept TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    renewal_of TEXT,
    revoked_at TEXT,
    revocation_reason TEXT,
    pem TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_dept ON certificates (dept);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    serial TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS crl_numbers (
    issuer TEXT PRIMARY KEY,
    number INTEGER NOT NULL
);
"""

_GENESIS = "0" * 64


def _ts(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _parse_ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@dataclass(frozen=True)
class CertRecord:
    """One issued certificate as the CA remembers it."""

    serial: CertSerial
    issuer: str
    dept: DeptCode
    name: str
    role: str
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    issued_at: dt.datetime
    renewal_of: CertSerial | None
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    pem: str

    def state(self, now: dt.datetime) -> str:
        """``revoked``, ``expired``, ``not-yet-valid`` or ``valid`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if now > self.not_after:
            return "expired"
        if now < self.not_before:
            return "not-yet-valid"
        return "valid"

    def is_live(self, now: dt.datetime) -> bool:
        """Not revoked and not expired (a not-yet-valid certificate counts as live)."""
        return self.revoked_at is None and now <= self.not_after

    def as_json(self, now: dt.datetime) -> dict[str, Any]:
        """Plain JSON-able view for ``--json`` output."""
        return {
            "serial": self.serial,
            "dept": self.dept,
            "name": self.name,
            "role": self.role,
            "issuer": self.issuer,
            "state": self.state(now),
            "not_before": _ts(self.not_before),
            "not_after": _ts(self.not_after),
            "issued_at": _ts(self.issued_at),
            "renewal_of": self.renewal_of,
            "revoked_at": _ts(self.revoked_at) if self.revoked_at else None,
            "revocation_reason": self.revocation_reason,
            "fingerprint_sha256": self.fingerprint,
        }


def _record(row: sqlite3.Row) -> CertRecord:
    return CertRecord(
        serial=CertSerial(row["serial"]),
        issuer=row["issuer"],
        dept=DeptCode(row["dept"]),
        name=row["name"],
        role=row["role"],
        fingerprint=row["fingerprint"],
        not_before=_parse_ts(row["not_before"]),
        not_after=_parse_ts(row["not_after"]),
        issued_at=_parse_ts(row["issued_at"]),
        renewal_of=CertSerial(row["renewal_of"]) if row["renewal_of"] else None,
        revoked_at=_parse_ts(row["revoked_at"]) if row["revoked_at"] else None,
        revocation_reason=row["revocation_reason"],
        pem=row["pem"],
    )


def _event_hash(prev: str, seq: int, at: str, action: str, serial: str | None, detail: str) -> str:
    payload = json.dumps([prev, seq, at, action, serial, detail], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class CADatabase:
    """Transactional access to ``ca.db``. Every mutation appends a hash-chained event."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise CAError(f"cannot open CA database {self.path}: {e}", code="E_CA_DB") from e

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction: all of it commits, or none of it."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise CAError(f"CA database is busy or damaged: {e}", code="E_CA_DB") from e
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # --- events -----------------------------------------------------------------------------

    def append_event(
        self,
        conn: sqlite3.Connection,
        at: dt.datetime,
        action: str,
        serial: str | None,
        detail: dict[str, Any],
    ) -> None:
        """Append one event to the hash chain (inside the caller's transaction)."""
        row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row["seq"] + 1, row["hash"]) if row else (1, _GENESIS)
        detail_text = json.dumps(detail, ensure_ascii=False, sort_keys=True)
        at_text = _ts(at)
        digest = _event_hash(prev, seq, at_text, action, serial, detail_text)
        conn.execute(
            "INSERT INTO events (seq, at, action, serial, detail, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, at_text, action, serial, detail_text, prev, digest),
        )

    # --- certificates -----------------------------------------------------------------------

    def insert_certificate(
        self, conn: sqlite3.Connection, rec: CertRecord, at: dt.datetime
    ) -> None:
        """Record an issued certificate and its ``issue`` event."""
        conn.execute(
            "INSERT INTO certificates (serial, issuer, dept, name, role, fingerprint, not_before, "
            "not_after, issued_at, renewal_of, revoked_at, revocation_reason, pem) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
            (
                rec.serial,
                rec.issuer,
                rec.dept,
                rec.name,
                rec.role,
                rec.fingerprint,
                _ts(rec.not_before),
                _ts(rec.not_after),
                _ts(rec.issued_at),
                rec.renewal_of,
                rec.pem,
            ),
        )
        self.append_event(
            conn,
            at,
            "issue",
            rec.serial,
            {"dept": rec.dept, "fingerprint": rec.fingerprint, "renewal_of": rec.renewal_of},
        )

    def mark_revoked(
        self, conn: sqlite3.Connection, serial: CertSerial, reason: str, at: dt.datetime
    ) -> None:
        """Record a revocation and its ``revoke`` event."""
        conn.execute(
            "UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?",
            (_ts(at), reason, serial),
        )
        self.append_event(conn, at, "revoke", serial, {"reason": reason})

    def next_crl_number(self, conn: sqlite3.Connection, issuer: str, at: dt.datetime) -> int:
        """Increment and return the CRL number of ``issuer`` (strictly increasing)."""
        row = conn.execute("SELECT number FROM crl_numbers WHERE issuer = ?", (issuer,)).fetchone()
        number = (row["number"] if row else 0) + 1
        conn.execute(
            "INSERT INTO crl_numbers (issuer, number) VALUES (?, ?) "
            "ON CONFLICT (issuer) DO UPDATE SET number = excluded.number",
            (issuer, number),
        )
        self.append_event(conn, at, "crl", None, {"issuer": issuer, "number": number})
        return number

    def get(self, serial: str) -> CertRecord | None:
        """The record for ``serial`` (canonical upper-case hex) or None."""
        row = self._conn.execute(
            "SELECT * FROM certificates WHERE serial = ?", (serial,)
        ).fetchone()
        return _record(row) if row else None

    def by_dept(self, dept: str) -> list[CertRecord]:
        """All certificates ever issued to ``dept``, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM certificates WHERE dept = ? ORDER BY issued_at, rowid", (dept,)
        ).fetchall()
        return [_record(r) for r in rows]

    def all(self) -> list[CertRecord]:
        """Every certificate, oldest first."""
        rows = self._conn.execute("SELECT * FROM certificates ORDER BY issued_at, rowid").fetchall()
        return [_record(r) for r in rows]

    def revoked(self, issuer: str) -> list[CertRecord]:
        """Revoked certificates issued by ``issuer`` (for the CRL)."""
        rows = self._conn.execute(
            "SELECT * FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL "
            "ORDER BY revoked_at, serial",
            (issuer,),
        ).fetchall()
        return [_record(r) for r in rows]

    # --- integrity --------------------------------------------------------------------------

    def check_integrity(
        self, certs_dir: Path | None = None, issuers: Mapping[str, x509.Name] | None = None
    ) -> int:
        """Verify the event chain against the tables (and ``certs_dir``); return event count.

        Every certificate row must match its ``issue`` event and the certificate it stores
        (fingerprint, department, name, role, validity, renewal, and with ``issuers`` — label to
        CA subject — the issuing CA that decides which CRL lists it); every revocation and
        CRL number must match its events. Raises :class:`CAError` ``E_CA_DB`` naming the first
        inconsistency found.

        All reads happen in one read transaction, so an issuance committed by another process
        meanwhile is seen either wholly (row and event) or not at all.
        """
        try:
            self._conn.execute("BEGIN")
        except sqlite3.DatabaseError as e:
            raise CAError(f"CA database is busy or damaged: {e}", code="E_CA_DB") from e
        try:
            return self._check_integrity(certs_dir, issuers)
        finally:
            self._conn.execute("ROLLBACK")

    def _check_integrity(
        self, certs_dir: Path | None, issuers: Mapping[str, x509.Name] | None
    ) -> int:

        def broken(what: str) -> CAError:
            return CAError(f"CA database integrity check failed: {what}", code="E_CA_DB")

        prev = _GENESIS
        expected_seq = 1
        issued: dict[str, dict[str, Any]] = {}
        revoked: dict[str, tuple[str, str]] = {}
        crl_numbers: dict[str, int] = {}
        try:
            for ev in self._conn.execute("SELECT * FROM events ORDER BY seq"):
                if ev["seq"] != expected_seq:
                    raise broken(f"event {expected_seq} is missing")
                if ev["prev_hash"] != prev:
                    raise broken(f"event {ev['seq']} does not follow event {ev['seq'] - 1}")
                digest = _event_hash(
                    prev, ev["seq"], ev["at"], ev["action"], ev["serial"], ev["detail"]
                )
                if digest != ev["hash"]:
                    raise broken(f"event {ev['seq']} was altered")
                detail = json.loads(ev["detail"])
                if ev["action"] == "issue":
                    issued[ev["serial"]] = {**detail, "at": ev["at"]}
                elif ev["action"] == "revoke":
                    revoked[ev["serial"]] = (ev["at"], detail["reason"])
                elif ev["action"] == "crl":
                    crl_numbers[detail["issuer"]] = detail["number"]
                prev = digest
                expected_seq += 1
            rows = {r.serial: r for r in self.all()}
            table_crl_numbers = {
                r["issuer"]: r["number"] for r in self._conn.execute("SELECT * FROM crl_numbers")
            }
        except (ValueError, KeyError, TypeError) as e:
            raise broken(f"unreadable entry ({e})") from e
        for serial, detail in issued.items():
            row = rows.get(CertSerial(serial))
            if row is None:
                raise broken(f"certificate {serial} was issued but its record is gone")
            if not _row_matches(row, detail, issuers):
                raise broken(f"certificate {serial} record was altered")
            revocation = revoked.get(serial)
            if row.revoked_at is None:
                if revocation is not None:
                    raise broken(f"revocation state of certificate {serial} was altered")
            elif revocation != (_ts(row.revoked_at), row.revocation_reason):
                raise broken(f"revocation state of certificate {serial} was altered")
        for serial in rows:
            if serial not in issued:
                raise broken(f"certificate {serial} has no issue event")
        if table_crl_numbers != crl_numbers:
            raise broken("CRL numbers do not match the CRL events (rolled back?)")
        if certs_dir is not None and certs_dir.is_dir():
            for f in certs_dir.glob("*.pem"):
                if f.stem not in rows:
                    raise broken(f"certificate file {f.name} has no record in the database")
        return expected_seq - 1


def _row_matches(
    row: CertRecord, event: dict[str, Any], issuers: Mapping[str, x509.Name] | None
) -> bool:
    """The row agrees with its issue event and with the certificate it stores."""
    try:
        cert = x509.load_pem_x509_certificate(row.pem.encode())
    except ValueError:
        return False

    def attr(oid: x509.ObjectIdentifier) -> object:
        values = cert.subject.get_attributes_for_oid(oid)
        return values[0].value if len(values) == 1 else None

    return (
        row.fingerprint == event["fingerprint"]
        and cert.fingerprint(hashes.SHA256()).hex() == event["fingerprint"]
        and row.dept == event["dept"] == attr(NameOID.SERIAL_NUMBER)
        and row.renewal_of == event["renewal_of"]
        and _ts(row.issued_at) == event["at"]
        and row.name == attr(NameOID.COMMON_NAME)
        and row.role == attr(NameOID.ORGANIZATIONAL_UNIT_NAME)
        and row.not_before == cert.not_valid_before_utc
        and row.not_after == cert.not_valid_after_utc
        and (issuers is None or issuers.get(row.issuer) == cert.issuer)
    )
