"""The department registry: who may connect, from which addresses, with which keys.

Every change is one transaction that also appends an audit event, so the registry's history can
be reconstructed and nobody changes an IP registration unnoticed. A department's certificate
must verify against the node's trust root and CRL when it is registered, and must carry the
department's code; its allowed addresses must lie inside the networks the ministry registered in
that certificate (部省 第五条), when the certificate lists any.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh
from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from exchange_common.errors import CertificateError, InputError, StoreError
from exchange_server.store.audit import append_event
from exchange_server.store.models import (
    Department,
    DepartmentNetwork,
    DepartmentSSHKey,
    DeptState,
)
from pki.identity import (
    DeptCode,
    IPNetwork,
    identity_from_certificate,
    parse_dept_code,
    parse_networks,
)
from pki.keys import certificate_pem
from pki.verify import TrustStore, verify_certificate

__all__ = [
    "DepartmentView",
    "add_department",
    "add_ssh_key",
    "department_certificate",
    "get_department",
    "list_departments",
    "parse_ssh_public_key",
    "set_networks",
    "set_state",
]


@dataclass(frozen=True)
class DepartmentView:
    """A department with its networks and keys, detached from the session."""

    code: DeptCode
    name: str
    state: str
    cert_serial: str
    cert_fingerprint: str
    cert_not_after: dt.datetime
    quota_bytes: int
    networks: tuple[str, ...]
    ssh_keys: tuple[tuple[str, str], ...]  # (fingerprint, public key line)

    def as_json(self) -> dict[str, object]:
        """Plain JSON-able view."""
        return {
            "code": self.code,
            "name": self.name,
            "state": self.state,
            "cert_serial": self.cert_serial,
            "cert_fingerprint_sha256": self.cert_fingerprint,
            "cert_not_after": self.cert_not_after.isoformat(),
            "quota_bytes": self.quota_bytes,
            "networks": list(self.networks),
            "ssh_keys": [fp for fp, _ in self.ssh_keys],
        }


def parse_ssh_public_key(line: str) -> tuple[str, str]:
    """Validate an OpenSSH public key line; return (SHA256 fingerprint, normalised line)."""
    try:
        key = asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as e:
        raise InputError(f"not an OpenSSH public key: {e}", code="E_SSH_KEY") from e
    normalised = key.export_public_key("openssh").decode().strip()
    return str(key.get_fingerprint("sha256")), normalised


def _refuse_known_keys(session: Session, fingerprints: Sequence[str]) -> None:
    # One key, one department: a shared key would let one department act as another.
    if len(set(fingerprints)) != len(fingerprints):
        raise InputError("the same SSH key was given twice", code="E_DUPLICATE")
    for fp in fingerprints:
        owner = session.exec(
            select(DepartmentSSHKey.dept_code).where(DepartmentSSHKey.fingerprint == fp)
        ).first()
        if owner is not None:
            raise InputError(f"SSH key {fp} is already registered (to {owner})", code="E_DUPLICATE")


def _view(session: Session, dept: Department) -> DepartmentView:
    nets = session.exec(
        select(DepartmentNetwork.cidr)
        .where(DepartmentNetwork.dept_code == dept.code)
        .order_by(col(DepartmentNetwork.id))
    ).all()
    keys = session.exec(
        select(DepartmentSSHKey)
        .where(DepartmentSSHKey.dept_code == dept.code)
        .order_by(col(DepartmentSSHKey.id))
    ).all()
    cert = _certificate(dept)
    return DepartmentView(
        code=DeptCode(dept.code),
        name=dept.name,
        state=dept.state,
        cert_serial=dept.cert_serial,
        cert_fingerprint=dept.cert_fingerprint,
        cert_not_after=cert.not_valid_after_utc,
        quota_bytes=dept.quota_bytes,
        networks=tuple(nets),
        ssh_keys=tuple((k.fingerprint, k.public_key) for k in keys),
    )


def _require(session: Session, code: str) -> Department:
    dept = session.get(Department, code)
    if dept is None:
        raise InputError(f"no department {code!r} is registered", code="E_NOT_FOUND")
    return dept


def _check_within(allowed: Sequence[IPNetwork], registered: Sequence[IPNetwork]) -> None:
    if not registered:
        return
    for net in allowed:
        if not any(
            net.version == r.version and net.subnet_of(r)  # type: ignore[arg-type]
            for r in registered
        ):
            raise InputError(
                f"{net} is outside the networks registered in the department's certificate "
                f"({', '.join(map(str, registered))})",
                code="E_IP",
            )


def add_department(
    session: Session,
    code: str,
    *,
    name: str | None,
    certificate: Sequence[x509.Certificate],
    trust: TrustStore,
    allow_ips: Sequence[str] = (),
    ssh_keys: Sequence[str] = (),
    quota_bytes: int,
    now: dt.datetime,
    actor: str,
) -> DepartmentView:
    """Register a department. The certificate must verify now and carry ``code``.

    Without ``allow_ips`` the department may connect from the networks in its certificate.
    Raises InputError (bad code, IP, key; duplicate), CertificateError (bad certificate).
    """
    dept_code = parse_dept_code(code)
    if not certificate:
        raise InputError("no certificate given", code="E_CERT_FORMAT")
    identity = verify_certificate(certificate[0], trust, now=now, chain=certificate[1:], role=None)
    if identity.code != dept_code:
        raise CertificateError(
            f"certificate is for {identity.code!r}, not {dept_code!r}", code="E_IDENTITY"
        )
    networks = parse_networks(allow_ips) if allow_ips else list(identity.networks)
    if not networks:
        raise InputError(
            "no allowed addresses: the certificate registers none, give --allow-ip", code="E_IP"
        )
    _check_within(networks, identity.networks)
    parsed_keys = [parse_ssh_public_key(k) for k in ssh_keys]
    _refuse_known_keys(session, [fp for fp, _ in parsed_keys])
    if session.get(Department, dept_code) is not None:
        raise InputError(f"department {dept_code} is already registered", code="E_DUPLICATE")
    dept = Department(
        code=dept_code,
        name=(name or identity.name).strip(),
        cert_pem=certificate_pem(certificate[0]).decode(),
        cert_fingerprint=identity.fingerprint,
        cert_serial=identity.serial,
        state=DeptState.ACTIVE.value,
        quota_bytes=quota_bytes,
        created_at=now,
        updated_at=now,
    )
    session.add(dept)
    session.flush()
    for net in networks:
        session.add(DepartmentNetwork(dept_code=dept_code, cidr=str(net)))
    for fp, line in parsed_keys:
        session.add(
            DepartmentSSHKey(dept_code=dept_code, public_key=line, fingerprint=fp, added_at=now)
        )
    append_event(
        session,
        actor=actor,
        action="dept.add",
        subject=dept_code,
        now=now,
        detail={
            "name": dept.name,
            "cert_serial": identity.serial,
            "networks": [str(n) for n in networks],
            "ssh_keys": [fp for fp, _ in parsed_keys],
        },
    )
    _flush(session)
    return _view(session, dept)


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as e:
        session.rollback()
        if "fingerprint" in str(e.orig):
            raise InputError("that SSH key is already registered", code="E_DUPLICATE") from e
        raise StoreError(
            "registry update conflicts with existing data", code="E_STORE", detail=str(e.orig)
        ) from e


def set_state(
    session: Session, code: str, state: DeptState, *, now: dt.datetime, actor: str
) -> DepartmentView:
    """Enable or disable a department (a disabled one cannot log in)."""
    dept = _require(session, code)
    old = dept.state
    dept.state = state.value
    dept.updated_at = now
    session.add(dept)
    append_event(
        session,
        actor=actor,
        action=f"dept.{state.value}",
        subject=dept.code,
        now=now,
        detail={"from": old},
    )
    _flush(session)
    return _view(session, dept)


def set_networks(
    session: Session, code: str, allow_ips: Sequence[str], *, now: dt.datetime, actor: str
) -> DepartmentView:
    """Replace the department's allowed addresses (must lie within its certificate's)."""
    dept = _require(session, code)
    networks = parse_networks(allow_ips)
    if not networks:
        raise InputError("give at least one --allow-ip", code="E_IP")
    cert = _certificate(dept)
    _check_within(networks, identity_from_certificate(cert, dept.cert_fingerprint).networks)
    old = session.exec(
        select(DepartmentNetwork).where(DepartmentNetwork.dept_code == dept.code)
    ).all()
    for row in old:
        session.delete(row)
    session.flush()
    for net in networks:
        session.add(DepartmentNetwork(dept_code=dept.code, cidr=str(net)))
    dept.updated_at = now
    session.add(dept)
    append_event(
        session,
        actor=actor,
        action="dept.set-ip",
        subject=dept.code,
        now=now,
        detail={"from": [r.cidr for r in old], "to": [str(n) for n in networks]},
    )
    _flush(session)
    return _view(session, dept)


def add_ssh_key(
    session: Session, code: str, public_key: str, *, now: dt.datetime, actor: str
) -> DepartmentView:
    """Register one more SSH public key for the department."""
    dept = _require(session, code)
    fp, line = parse_ssh_public_key(public_key)
    _refuse_known_keys(session, [fp])
    session.add(
        DepartmentSSHKey(dept_code=dept.code, public_key=line, fingerprint=fp, added_at=now)
    )
    append_event(
        session,
        actor=actor,
        action="dept.add-key",
        subject=dept.code,
        now=now,
        detail={"fingerprint": fp},
    )
    _flush(session)
    return _view(session, dept)


def get_department(session: Session, code: str) -> DepartmentView:
    """One department, or InputError E_NOT_FOUND."""
    return _view(session, _require(session, code))


def list_departments(session: Session) -> list[DepartmentView]:
    """All departments by code."""
    rows = session.exec(select(Department).order_by(col(Department.code))).all()
    return [_view(session, d) for d in rows]


def _certificate(dept: Department) -> x509.Certificate:
    """The department's registered certificate (the leaf it was registered with)."""
    return _parse_pem(dept.cert_pem)


@functools.lru_cache(maxsize=256)
def _parse_pem(pem: str) -> x509.Certificate:
    # Parsed once per process for each registered certificate (every receipt needs one);
    # keyed by the PEM itself, so a renewal is a new entry, never a stale one.
    return x509.load_pem_x509_certificate(pem.encode())


def department_certificate(session: Session, code: str) -> x509.Certificate | None:
    """The registered certificate of department ``code`` (the one the node seals to), or None
    when no such department is registered. Disabled departments keep theirs: a receipt for an
    upload that arrived before the department was disabled is still owed."""
    # the one column, not the whole row: every receipt and result asks
    pem = session.exec(select(Department.cert_pem).where(Department.code == code)).first()
    return None if pem is None else _parse_pem(pem)
