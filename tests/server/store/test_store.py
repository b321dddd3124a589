"""State store: migrations, registry and audit trail on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import asyncssh
import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session

from exchange_common.errors import CertificateError, InputError, StoreError
from exchange_server.spool import Spool
from exchange_server.store.audit import append_event, verify_chain
from exchange_server.store.db import migrate, open_store, sqlite_url
from exchange_server.store.models import AuditEvent, DeptState
from exchange_server.store.registry import (
    add_department,
    add_ssh_key,
    get_department,
    list_departments,
    set_networks,
    set_state,
)
from tests.conftest import CAFixture


def _now() -> dt.datetime:
    """The current time, read when a test runs: certificates are issued at test time, so a
    time taken when the module was collected can precede their validity on a slow run."""
    return dt.datetime.now(dt.UTC)


def _ssh_pub() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()


def test_migration_creates_tables_and_is_idempotent(engine: Engine) -> None:
    names = set(inspect(engine).get_table_names())
    assert {
        "department",
        "department_network",
        "department_ssh_key",
        "upload",
        "seen_bundle",
        "audit_event",
        "audit_checkpoint",
        "audit_person",
        "dataset_version",
        "outbox_pull",
        "alembic_version",
    } <= names
    migrate(engine)  # second run changes nothing and does not fail
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0007"


def test_bad_url_is_a_store_error() -> None:
    with pytest.raises(StoreError) as ei:
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert ei.value.code == "E_STORE"


def test_register_department_and_audit(engine: Engine, test_ca: CAFixture) -> None:
    issued = test_ca.issue("MZ330100", "杭州市民政局", ("10.1.0.0/16",))
    trust = test_ca.trust()
    with Session(engine) as s:
        view = add_department(
            s,
            "MZ330100",
            name=None,
            certificate=issued.chain,
            trust=trust,
            ssh_keys=[_ssh_pub()],
            quota_bytes=11 * 1024**3,
            now=_now(),
            actor="t",
        )
        s.commit()
    assert view.name == "杭州市民政局"
    assert view.networks == ("10.1.0.0/16",)
    assert view.quota_bytes == 11 * 1024**3  # beyond 32 bits: BigInteger column
    with Session(engine) as s:
        view = set_networks(s, "MZ330100", ["10.1.2.0/24", "10.1.9.9"], now=_now(), actor="t")
        view = add_ssh_key(s, "MZ330100", _ssh_pub(), now=_now(), actor="t")
        view = set_state(s, "MZ330100", DeptState.DISABLED, now=_now(), actor="t")
        s.commit()
    with Session(engine) as s:
        got = get_department(s, "MZ330100")
        assert got.networks == ("10.1.2.0/24", "10.1.9.9/32")
        assert len(got.ssh_keys) == 2
        assert got.state == "disabled"
        assert [v.code for v in list_departments(s)] == ["MZ330100"]
        assert verify_chain(s) == 4  # add, set-ip, add-key, disable


def test_registry_refusals_change_nothing(engine: Engine, test_ca: CAFixture, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_ca

    issued = test_ca.issue("MZ330100", "杭州市民政局", ("10.1.0.0/16",))
    trust = test_ca.trust()
    other = make_ca(tmp_path / "other")
    foreign = other.issue("MZ330100", "假冒民政局", ("10.1.0.0/16",))
    cases = [
        (dict(code="MZ330100", certificate=foreign.chain), CertificateError, "E_CHAIN"),
        (dict(code="RS330100", certificate=issued.chain), CertificateError, "E_IDENTITY"),
        (dict(code="../x", certificate=issued.chain), InputError, "E_DEPT_CODE"),
        (
            dict(code="MZ330100", certificate=issued.chain, allow_ips=["10.2.0.0/16"]),
            InputError,
            "E_IP",
        ),
        (
            dict(code="MZ330100", certificate=issued.chain, ssh_keys=["ssh-ed25519 AAAAnot"]),
            InputError,
            "E_SSH_KEY",
        ),
    ]
    for kwargs, exc, code in cases:
        with Session(engine) as s, pytest.raises(exc) as ei:
            add_department(
                s, name=None, trust=trust, quota_bytes=1, now=_now(), actor="t", **kwargs
            )  # type: ignore[arg-type]
        assert ei.value.code == code, kwargs
    with Session(engine) as s:
        assert list_departments(s) == []
        assert verify_chain(s) == 0


def test_duplicate_department_and_key_refused(engine: Engine, test_ca: CAFixture) -> None:
    issued = test_ca.issue("MZ330100", "杭州市民政局", ("10.1.0.0/16",))
    trust, key = test_ca.trust(), _ssh_pub()
    with Session(engine) as s:
        add_department(
            s,
            "MZ330100",
            name=None,
            certificate=issued.chain,
            trust=trust,
            ssh_keys=[key],
            quota_bytes=1,
            now=_now(),
            actor="t",
        )
        s.commit()
    with Session(engine) as s, pytest.raises(InputError) as ei:
        add_department(
            s,
            "MZ330100",
            name=None,
            certificate=issued.chain,
            trust=trust,
            quota_bytes=1,
            now=_now(),
            actor="t",
        )
    assert ei.value.code == "E_DUPLICATE"
    with Session(engine) as s, pytest.raises(InputError) as ei:
        add_ssh_key(s, "MZ330100", key, now=_now(), actor="t")
    assert ei.value.code == "E_DUPLICATE"
    with Session(engine) as s:
        assert len(get_department(s, "MZ330100").ssh_keys) == 1
        assert verify_chain(s) == 1


def test_revoked_certificate_cannot_be_registered(engine: Engine, test_ca: CAFixture) -> None:
    issued = test_ca.issue("MZ330100", "杭州市民政局", ("10.1.0.0/16",))
    test_ca.ca.revoke(serial=issued.record.serial)
    with Session(engine) as s, pytest.raises(CertificateError) as ei:
        add_department(
            s,
            "MZ330100",
            name=None,
            certificate=issued.chain,
            trust=test_ca.trust(),
            quota_bytes=1,
            now=_now(),
            actor="t",
        )
    assert ei.value.code == "E_REVOKED"


@pytest.mark.parametrize("attack", ["edit", "delete"])
def test_audit_tampering_is_detected(engine: Engine, attack: str) -> None:
    with Session(engine) as s:
        for i in range(3):
            append_event(s, actor="t", action="x", subject=str(i), detail={"i": i}, now=_now())
        s.commit()
    with Session(engine) as s:
        if attack == "edit":
            s.execute(text("UPDATE audit_event SET detail = '{\"i\": 9}' WHERE seq = 2"))
        else:
            s.execute(text("DELETE FROM audit_event WHERE seq = 2"))
        s.commit()
    with Session(engine) as s, pytest.raises(StoreError) as ei:
        verify_chain(s)
    assert ei.value.code == "E_AUDIT"
    assert "2" in ei.value.message


def test_audit_times_round_trip_as_utc(engine: Engine) -> None:
    when = dt.datetime(2026, 11, 22, 16, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with Session(engine) as s:
        append_event(s, actor="t", action="x", now=when)
        s.commit()
    with Session(engine) as s:
        ev = s.get(AuditEvent, 1)
        assert ev is not None
        assert verify_chain(s) == 1


def test_state_file_is_made_owner_only_and_the_spool_private(tmp_path: Path) -> None:
    """An existing state.db readable by others (a home from before) is tightened when the node
    opens it; spool folders are created 0700 at every level, the wal file inherits 0600."""
    db = tmp_path / "state.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    engine = open_store(sqlite_url(db))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
        for f in tmp_path.glob("state.db*"):
            assert f.stat().st_mode & 0o777 == 0o600, f
    finally:
        engine.dispose()
    spool = Spool(tmp_path / "spool")
    outbox = spool.outbox("MZ330100")
    for folder in (tmp_path / "spool", tmp_path / "spool" / "depts", outbox.parent, outbox):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
