"""The ministry certificate authority (部收入认定中心): init, issue, revoke, CRL, list.

A CA directory holds::

    root.pem  root.key            trust root (key encrypted at rest unless --no-passphrase)
    intermediate.pem/.key         optional issuing CA; then the root key can stay offline
    ca.json                       name, key type, which CA issues
    ca.db                         the CA database (pki.cadb), hash-chained events
    certs/<SERIAL>.pem            copy of every issued certificate
    crl.pem                       the latest CRL(s), issuing CA first

Mutations hold an exclusive lock on ``.lock`` and commit to the database before any output
file is written; failed operations leave the directory unchanged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchange_common.errors import CAError, InputError
from exchange_common.fs import atomic_write, new_directory, require_empty_dir
from pki.cadb import CADatabase, CertRecord
from pki.identity import CertSerial, DeptCode, IPNetwork, Role, serial_hex
from pki.keys import (
    KeyType,
    PrivateKey,
    certificate_pem,
    fingerprint,
    generate_private_key,
    load_private_key,
    private_key_pem,
)
from pki.profiles import BACKDATE, build_ca_certificate, build_end_entity_certificate, ca_name

__all__ = [
    "CA_PASSPHRASE_ENV",
    "CertificateAuthority",
    "IssuedCertificate",
]

#: Environment variable holding the CA key passphrase.
CA_PASSPHRASE_ENV = "EXCHANGE_PKI_PASSPHRASE"  # noqa: S105 - a variable name, not a secret


ROOT_YEARS = 20
INTERMEDIATE_YEARS = 10
DEFAULT_CERT_DAYS = 365
DEFAULT_CRL_DAYS = 7
_CN_MAX_BYTES = 64


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    """Result of :meth:`CertificateAuthority.issue`: the certificate, its chain, maybe a key."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey | None
    record: CertRecord


@dataclass(frozen=True)
class _Config:
    name: str
    key_type: KeyType
    intermediate: bool

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "name": self.name,
                "key_type": self.key_type.value,
                "intermediate": self.intermediate,
                "format": 1,
            },
            ensure_ascii=False,
            indent=2,
        ).encode()


class CertificateAuthority:
    """A CA directory opened for use. Keys are loaded only when an operation needs them."""

    def __init__(self, ca_dir: Path, config: _Config, db: CADatabase):
        self.dir = ca_dir
        self.config = config
        self.db = db
        self.root = _load_cert(ca_dir / "root.pem")
        self.intermediate = _load_cert(ca_dir / "intermediate.pem") if config.intermediate else None

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        ca_dir: Path,
        name: str,
        *,
        passphrase: bytes | None,
        key_type: KeyType = KeyType.EC,
        intermediate: bool = False,
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """Create a new CA in ``ca_dir`` (which must not exist or be empty).

        Everything is built in a temporary sibling folder and renamed into place, so a failure
        leaves no half-made CA behind. Writes ``root.pem`` (and ``intermediate.pem``), the keys
        with mode 0600, an empty database and a first CRL.
        """
        now = now or utcnow()
        name = name.strip()
        if not name:
            raise InputError("CA name must not be empty", code="E_INPUT")
        _check_name_length(f"{name} Issuing CA" if intermediate else name, "CA name")
        ca_dir = Path(ca_dir)
        require_empty_dir(ca_dir)
        with new_directory(ca_dir) as tmp:
            (tmp / "certs").mkdir(mode=0o700)
            # Made now so that the first operation's lock does not add a file: a failed
            # operation must leave the directory byte-for-byte unchanged.
            (tmp / ".lock").touch(mode=0o600)
            root_key = generate_private_key(key_type)
            root_name = ca_name(name)
            root = build_ca_certificate(
                subject=root_name,
                public_key=root_key.public_key(),
                issuer=root_name,
                issuer_key=root_key,
                serial=x509.random_serial_number(),
                not_before=now - BACKDATE,
                not_after=now + dt.timedelta(days=365 * ROOT_YEARS),
                path_length=1 if intermediate else 0,
            )
            atomic_write(tmp / "root.key", private_key_pem(root_key, passphrase), mode=0o600)
            atomic_write(tmp / "root.pem", certificate_pem(root))
            if intermediate:
                int_key = generate_private_key(key_type)
                int_cert = build_ca_certificate(
                    subject=ca_name(f"{name} Issuing CA"),
                    public_key=int_key.public_key(),
                    issuer=root_name,
                    issuer_key=root_key,
                    serial=x509.random_serial_number(),
                    not_before=now - BACKDATE,
                    not_after=now + dt.timedelta(days=365 * INTERMEDIATE_YEARS),
                    path_length=0,
                )
                atomic_write(tmp / "intermediate.key", private_key_pem(int_key, passphrase), 0o600)
                atomic_write(tmp / "intermediate.pem", certificate_pem(int_cert))
            config = _Config(name=name, key_type=key_type, intermediate=intermediate)
            atomic_write(tmp / "ca.json", config.to_json())
            db = CADatabase(tmp / "ca.db")
            with db.transaction() as conn:
                db.append_event(
                    conn,
                    now,
                    "init",
                    None,
                    {
                        "name": name,
                        "root_fingerprint": fingerprint(root),
                        "intermediate": intermediate,
                        "key_type": key_type.value,
                    },
                )
            db.close()
            ca = cls(tmp, config, CADatabase(tmp / "ca.db"))
            ca._write_crl(ca._build_crls(now, DEFAULT_CRL_DAYS, passphrase))
            ca.db.close()
        return cls.open(ca_dir)

    @classmethod
    def open(cls, ca_dir: Path) -> CertificateAuthority:
        """Open an existing CA directory and check the database's integrity."""
        ca_dir = Path(ca_dir)
        cfg_path = ca_dir / "ca.json"
        if not cfg_path.is_file():
            raise CAError(
                f"{ca_dir} is not a CA directory (no ca.json): run exchange-pki init",
                code="E_NO_CA",
            )
        try:
            raw = json.loads(cfg_path.read_text(encoding="utf-8"))
            config = _Config(raw["name"], KeyType(raw["key_type"]), bool(raw["intermediate"]))
        except (ValueError, KeyError) as e:
            raise CAError(f"{cfg_path} is damaged: {e}", code="E_CA_DB") from e
        db = CADatabase(ca_dir / "ca.db")
        try:
            ca = cls(ca_dir, config, db)
            issuers = {"root": ca.root.subject}
            if ca.intermediate is not None:
                issuers["intermediate"] = ca.intermediate.subject
            db.check_integrity(ca_dir / "certs", issuers)
        except BaseException:
            db.close()
            raise
        return ca

    def close(self) -> None:
        """Release the database connection."""
        self.db.close()

    # --- helpers ----------------------------------------------------------------------------

    @property
    def issuer_label(self) -> str:
        """Which CA issues end-entity certificates: ``intermediate`` or ``root``."""
        return "intermediate" if self.intermediate is not None else "root"

    @property
    def issuing_cert(self) -> x509.Certificate:
        """The certificate of the CA that signs department and node certificates."""
        return self.intermediate if self.intermediate is not None else self.root

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Certificates above an end entity, issuing CA first, root excluded."""
        return (self.intermediate,) if self.intermediate is not None else ()

    def _key(self, label: str, passphrase: bytes | None) -> PrivateKey:
        return load_private_key(
            self.dir / f"{label}.key", passphrase, passphrase_env=CA_PASSPHRASE_ENV
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self.dir / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- operations -------------------------------------------------------------------------

    def issue(
        self,
        code: DeptCode,
        name: str,
        networks: Sequence[IPNetwork],
        *,
        role: Role = Role.DEPARTMENT,
        csr: x509.CertificateSigningRequest | None = None,
        key_type: KeyType | None = None,
        days: int = DEFAULT_CERT_DAYS,
        renew: bool = False,
        dns_names: Sequence[str] = (),
        passphrase: bytes | None = None,
        now: dt.datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a certificate for a department (or node) and record it.

        With ``csr`` the certificate binds the CSR's key; otherwise a key pair is generated and
        returned. A department that already holds a live certificate gets a second one only with
        ``renew=True`` (the old one stays valid until it expires or is revoked, so the department
        can switch over without an outage). Raises ``E_DUPLICATE``, ``E_PASSPHRASE``, ``E_INPUT``.
        """
        now = now or utcnow()
        name = name.strip()
        if not name:
            raise InputError("department name must not be empty", code="E_INPUT")
        _check_name_length(name, "department name")
        if not 1 <= days <= 3650:
            raise InputError(f"validity must be 1-3650 days, not {days}", code="E_INPUT")
        with self._locked():
            live = [r for r in self.db.by_dept(code) if r.is_live(now)]
            if live and not renew:
                raise CAError(
                    f"department {code} already holds live certificate {live[-1].serial} "
                    f"(valid until {live[-1].not_after:%Y-%m-%d}); use --renew to issue a "
                    "successor or revoke it first",
                    code="E_DUPLICATE",
                )
            if renew and not live:
                raise CAError(
                    f"--renew given but department {code} has no live certificate",
                    code="E_NOT_FOUND",
                )
            issuer_key = self._key(self.issuer_label, passphrase)
            key: PrivateKey | None = None
            if csr is not None:
                public_key = csr.public_key()
                assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
            else:
                key = generate_private_key(key_type or self.config.key_type)
                public_key = key.public_key()
            not_after = min(now + dt.timedelta(days=days), self.issuing_cert.not_valid_after_utc)
            cert = build_end_entity_certificate(
                code=code,
                name=name,
                role=role,
                networks=networks,
                public_key=public_key,
                issuer_cert=self.issuing_cert,
                issuer_key=issuer_key,
                serial=x509.random_serial_number(),
                not_before=now - BACKDATE,
                not_after=not_after,
                dns_names=dns_names,
            )
            pem = certificate_pem(cert)
            record = CertRecord(
                serial=serial_hex(cert.serial_number),
                issuer=self.issuer_label,
                dept=code,
                name=name,
                role=role.value,
                fingerprint=fingerprint(cert),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                issued_at=now,
                renewal_of=live[-1].serial if renew else None,
                revoked_at=None,
                revocation_reason=None,
                pem=pem.decode(),
            )
            with self.db.transaction() as conn:
                self.db.insert_certificate(conn, record, now)
            atomic_write(self.dir / "certs" / f"{record.serial}.pem", pem)
        return IssuedCertificate(cert, (cert, *self.chain), key, record)

    def revocation_targets(
        self,
        *,
        serial: CertSerial | None = None,
        dept: DeptCode | None = None,
        allow_node: bool = False,
        now: dt.datetime | None = None,
    ) -> list[CertRecord]:
        """What :meth:`revoke` with the same arguments would revoke now; changes nothing.

        For an operator to confirm before revoking (a mistyped serial once revoked a node's own
        certificate). Raises what :meth:`revoke` raises before it writes: ``E_INPUT``,
        ``E_UNKNOWN_SERIAL``, ``E_ALREADY_REVOKED``, ``E_NOT_FOUND``, ``E_NODE_CERT``.
        """
        return self._targets(serial, dept, allow_node, now or utcnow())

    def revoke(
        self,
        *,
        serial: CertSerial | None = None,
        dept: DeptCode | None = None,
        reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
        allow_node: bool = False,
        expected: Collection[CertSerial] | None = None,
        now: dt.datetime | None = None,
    ) -> list[CertRecord]:
        """Revoke one certificate by serial, or every live certificate of a department.

        A node (server) certificate is revoked only with ``allow_node``: without it every
        party's exchange with that node stops at the next CRL. With ``expected`` (the serials an
        operator confirmed from :meth:`revocation_targets`) the targets found under the lock
        must be exactly those, so a certificate issued or revoked meanwhile is never revoked
        unseen. The revocation takes effect for relying parties with the next CRL (``crl``).
        Raises ``E_INPUT``, ``E_UNKNOWN_SERIAL``, ``E_ALREADY_REVOKED``, ``E_NOT_FOUND``,
        ``E_NODE_CERT`` or ``E_CONCURRENT`` and changes nothing then.
        """
        now = now or utcnow()
        with self._locked():
            targets = self._targets(serial, dept, allow_node, now)
            if expected is not None and {t.serial for t in targets} != set(expected):
                raise CAError(
                    "the certificates to revoke changed while you were confirming "
                    f"(now: {', '.join(t.serial for t in targets)}); nothing was revoked",
                    code="E_CONCURRENT",
                )
            with self.db.transaction() as conn:
                for rec in targets:
                    self.db.mark_revoked(conn, rec.serial, reason.value, now)
        return [r for r in (self.db.get(t.serial) for t in targets) if r is not None]

    def _targets(
        self,
        serial: CertSerial | None,
        dept: DeptCode | None,
        allow_node: bool,
        now: dt.datetime,
    ) -> list[CertRecord]:
        if (serial is None) == (dept is None):
            raise InputError("give exactly one of --serial or --dept", code="E_INPUT")
        if serial is not None:
            rec = self.db.get(serial)
            if rec is None:
                raise CAError(
                    f"no certificate with serial {serial} was issued by this CA",
                    code="E_UNKNOWN_SERIAL",
                )
            if rec.revoked_at is not None:
                raise CAError(
                    f"certificate {serial} is already revoked ({rec.revocation_reason})",
                    code="E_ALREADY_REVOKED",
                )
            targets = [rec]
        else:
            assert dept is not None
            targets = [r for r in self.db.by_dept(dept) if r.is_live(now)]
            if not targets:
                raise CAError(
                    f"department {dept} has no live certificate to revoke", code="E_NOT_FOUND"
                )
        nodes = [t for t in targets if t.role == Role.NODE.value]
        if nodes and not allow_node:
            # The threat is a slip, not an attacker: one mistyped serial once revoked the node's
            # own certificate, and every department's exchange with it stopped at the next CRL.
            raise InputError(
                f"certificate {nodes[0].serial} is the NODE certificate of {nodes[0].dept} "
                f"{nodes[0].name}: revoking it stops that node's exchange with every department; "
                "if you mean it, add --allow-node",
                code="E_NODE_CERT",
            )
        return targets

    def _build_crls(
        self, now: dt.datetime, days: int, passphrase: bytes | None
    ) -> list[x509.CertificateRevocationList]:
        issuers: list[tuple[str, x509.Certificate]] = [(self.issuer_label, self.issuing_cert)]
        if self.intermediate is not None:
            issuers.append(("root", self.root))
        keys = {label: self._key(label, passphrase) for label, _ in issuers}
        crls = []
        with self.db.transaction() as conn:
            for label, cert in issuers:
                number = self.db.next_crl_number(conn, label, now)
                builder = (
                    x509.CertificateRevocationListBuilder()
                    .issuer_name(cert.subject)
                    .last_update(now - BACKDATE)
                    .next_update(now + dt.timedelta(days=days))
                    .add_extension(x509.CRLNumber(number), critical=False)
                    .add_extension(
                        x509.AuthorityKeyIdentifier.from_issuer_public_key(
                            keys[label].public_key()
                        ),
                        critical=False,
                    )
                )
                for rec in self.db.revoked(label):
                    assert rec.revoked_at is not None
                    entry = (
                        x509.RevokedCertificateBuilder()
                        .serial_number(int(rec.serial, 16))
                        .revocation_date(rec.revoked_at)
                        .add_extension(
                            x509.CRLReason(
                                x509.ReasonFlags(rec.revocation_reason or "unspecified")
                            ),
                            critical=False,
                        )
                        .build()
                    )
                    builder = builder.add_revoked_certificate(entry)
                crls.append(builder.sign(keys[label], hashes.SHA256()))
        return crls

    def _write_crl(self, crls: Sequence[x509.CertificateRevocationList]) -> bytes:
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)
        atomic_write(self.dir / "crl.pem", pem)
        return pem

    def crl(
        self,
        *,
        days: int = DEFAULT_CRL_DAYS,
        passphrase: bytes | None = None,
        now: dt.datetime | None = None,
    ) -> bytes:
        """Sign fresh CRLs (issuing CA first, then the root if an intermediate issues).

        Each CRL number is one more than the last one this CA signed. Returns the PEM text and
        also stores it as ``crl.pem`` in the CA directory.
        """
        now = now or utcnow()
        if not 1 <= days <= 365:
            raise InputError(f"CRL validity must be 1-365 days, not {days}", code="E_INPUT")
        with self._locked():
            return self._write_crl(self._build_crls(now, days, passphrase))

    def records(self) -> list[CertRecord]:
        """Every certificate this CA issued, oldest first."""
        return self.db.all()

    def trust_pem(self) -> bytes:
        """The root certificate, PEM (what relying parties configure as their trust root)."""
        return certificate_pem(self.root)


def _check_name_length(name: str, what: str) -> None:
    # X.509 commonName holds at most 64 bytes here (cryptography counts UTF-8 bytes), i.e.
    # 21 Chinese characters; refuse clearly instead of failing inside the certificate builder.
    size = len(name.encode("utf-8"))
    if size > _CN_MAX_BYTES:
        raise InputError(
            f"{what} {name!r} is too long for a certificate: {size} bytes in UTF-8, at most "
            f"{_CN_MAX_BYTES} (21 Chinese characters); use the official short name",
            code="E_INPUT",
        )


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as e:
        raise CAError(f"cannot read CA certificate {path}: {e}", code="E_CA_DB") from e
