"""``exchange-server dept``: the registry shows what the node does with each department now.

A node's registry once listed a revoked department as ``active``, and took a certificate that
ended minutes later without a word. Here each department is checked against the node's current
CRL and the clock: ``revoked``, ``expired``, ``no-current-crl``, ``expires-soon`` or ``active``,
in words and in ``--json``; ``dept add`` refuses an expired or revoked certificate (nothing
registered, nothing audited) and warns about one that ends within 30 days. SQLite only: these
are CLI views, the registry's store behaviour is tested on both stores in tests/server/store.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner, Result

from exchange_common.codes import reason
from exchange_common.fs import atomic_write
from exchange_server.admin.cli import app
from exchange_server.store.audit import verify_chain
from exchange_server.store.registry import add_department
from pki.ca import IssuedCertificate
from pki.ca_input import parse_reason
from pki.keys import certificate_pem
from tests.conftest import CAFixture, make_ca
from tests.server.world import World, build_world

MZ, RS = "MZ330100", "RS330100"


@pytest.fixture
def world(tmp_path: Path, test_ca: CAFixture) -> World:
    """A node (SQLite) with MZ330100 and RS330100 registered and a current CRL."""
    return build_world(tmp_path, test_ca)


def dept(world: World, *args: str) -> Result:
    return CliRunner().invoke(
        app, ["dept", args[0], "--home", str(world.node.config.home), *args[1:]]
    )


def listed(world: World, *extra: str) -> dict[str, dict[str, object]]:
    result = dept(world, "list", "--json", *extra)
    assert result.exit_code == 0, result.output
    return {row["code"]: row for row in json.loads(result.stdout)}


def table_states(world: World) -> dict[str, str]:
    """code -> the state column of the text table."""
    result = dept(world, "list")
    assert result.exit_code == 0, result.output
    rows = [line.split("│") for line in result.stdout.splitlines() if line.startswith("│")]
    assert all(len(cells) == 8 and cells[1].strip() for cells in rows), result.stdout  # unwrapped
    return {cells[1].strip(): cells[3].strip() for cells in rows if cells[1].strip() != "code"}


def _cert_file(world: World, issued: IssuedCertificate) -> Path:
    path = world.tmp / f"{issued.record.dept}-{issued.record.serial}.pem"
    atomic_write(path, certificate_pem(issued.chain))
    return path


# --- dept list: revoked, expired, expires soon, no current CRL ----------------------------------


def test_a_revoked_department_is_listed_as_revoked(world: World) -> None:
    assert table_states(world) == {MZ: "active", RS: "active"}
    world.ca.ca.revoke(serial=world.depts[RS].record.serial, reason=parse_reason("keyCompromise"))
    # Revoked at the CA but the node's CRL does not list it yet: the node still admits RS.
    assert listed(world)[RS]["state"] == "active"
    world.refresh_crl()

    assert table_states(world) == {MZ: "active", RS: "revoked"}
    rows = listed(world)
    assert rows[RS]["state"] == "revoked"
    assert rows[RS]["registry_state"] == "active"  # nobody disabled it: the CRL decides
    assert rows[RS]["cert_state"] == "revoked"
    assert rows[RS]["cert_revocation_reason"] == "keyCompromise"
    assert rows[RS]["cert_revoked_at"] is not None
    assert rows[MZ]["state"] == "active" and rows[MZ]["cert_state"] == "valid"
    assert rows[MZ]["cert_revoked_at"] is None and rows[MZ]["crl_code"] is None
    text = dept(world, "list").stdout
    assert "revoked" in text and "(keyCompromise)" in text

    shown = dept(world, "show", RS)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"{RS}  杭州市人社局  [revoked]")
    assert json.loads(dept(world, "show", RS, "--json").stdout)["state"] == "revoked"


def test_a_disabled_department_stays_disabled_and_revoked_wins(world: World) -> None:
    assert dept(world, "disable", MZ).exit_code == 0
    assert listed(world)[MZ]["state"] == "disabled"
    world.ca.ca.revoke(serial=world.depts[MZ].record.serial)
    world.refresh_crl()
    row = listed(world)[MZ]
    assert (row["state"], row["registry_state"]) == ("revoked", "disabled")


def test_expired_and_soon_expiring_departments(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    world = build_world(tmp_path, make_ca(tmp_path / "ca", now=now - dt.timedelta(days=10)))
    past = now - dt.timedelta(days=3)
    old = world.ca.issue("GA330100", "杭州市公安局", now=past, days=1)  # ended two days ago
    soon = world.ca.issue("JY330100", "杭州市教育局", days=10)
    with Session(world.node.engine) as s:  # registered while the old one was still valid
        add_department(
            s, "GA330100", name=None, certificate=old.chain, trust=world.ca.trust(now=past),
            quota_bytes=1, now=past, actor="test",
        )  # fmt: skip
        s.commit()
    world.refresh_crl()
    added = dept(world, "add", "JY330100", "--cert", str(_cert_file(world, soon)))
    assert added.exit_code == 0, added.output

    assert table_states(world) == {
        "GA330100": "expired", "JY330100": "expires soon", MZ: "active", RS: "active",
    }  # fmt: skip
    rows = listed(world)
    assert rows["GA330100"]["state"] == rows["GA330100"]["cert_state"] == "expired"
    assert rows["GA330100"]["cert_days_left"] < 0  # type: ignore[operator]
    assert rows["JY330100"]["state"] == "expires-soon"
    assert rows["JY330100"]["cert_days_left"] in (9, 10)
    assert "(in 9 days)" in dept(world, "list").stdout
    assert listed(world, "--warn-days", "5")["JY330100"]["state"] == "active"
    world.ca.ca.close()


def test_without_a_current_crl_every_department_is_shown_refused(world: World) -> None:
    """Fail closed: the node refuses everyone then, so the listing must not say "active"."""
    world.ca.ca.revoke(serial=world.depts[RS].record.serial)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    stale = world.ca.ca.crl(now=long_ago, days=1)
    atomic_write(world.node.config.path(world.node.config.crl), stale)

    result = dept(world, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["code"]: r for r in json.loads(result.stdout)}
    assert rows[MZ]["state"] == "no-current-crl" and rows[MZ]["crl_code"] == "E_CRL_STALE"
    assert rows[RS]["state"] == "revoked"  # listed on the newest CRL held, stale or not
    assert "warning: the node holds no current CRL (E_CRL_STALE)" in result.stderr
    assert table_states(world)[MZ] == "no current CRL"


def test_list_under_an_intermediate_ca(tmp_path: Path, inter_ca: CAFixture) -> None:
    """Department certificates issued by an intermediate are checked against its CRL."""
    w = build_world(tmp_path, inter_ca)
    inter_ca.ca.revoke(serial=w.depts[MZ].record.serial)
    w.refresh_crl()
    assert table_states(w) == {MZ: "revoked", RS: "active"}


# --- dept add: refuse expired and revoked, warn about soon-expiring -----------------------------


def _assert_refused(world: World, result: Result, code: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and lines[0].endswith(f"({code})")
    assert lines[-1] == f"hint: {reason(code).operator_hint}"
    assert "Traceback" not in result.output and result.stdout == ""
    assert set(listed(world)) == {MZ, RS}  # nothing registered
    with Session(world.node.engine) as s:
        assert verify_chain(s) == 2  # ... and nothing audited beyond the two registrations


def test_add_refuses_an_expired_certificate(world: World) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    old = world.ca.issue("GA330100", "杭州市公安局", now=past, days=1)
    result = dept(world, "add", "GA330100", "--cert", str(_cert_file(world, old)))
    _assert_refused(world, result, "E_EXPIRED")
    assert result.stderr.startswith("error: cannot register GA330100: the certificate has expired")
    ends = old.certificate.not_valid_after_utc
    assert f"  cause: CN=杭州市公安局,serialNumber=GA330100,OU=department,C=CN expired {ends}" in (
        result.stderr
    )


def test_add_refuses_a_certificate_on_the_nodes_crl(world: World) -> None:
    issued = world.ca.issue("GA330100", "杭州市公安局")
    world.ca.ca.revoke(serial=issued.record.serial)
    world.refresh_crl()
    result = dept(world, "add", "GA330100", "--cert", str(_cert_file(world, issued)))
    _assert_refused(world, result, "E_REVOKED")
    assert "cannot register GA330100: certificate has been revoked" in result.stderr
    assert issued.record.serial in result.stderr  # the cause line names it


@pytest.mark.parametrize("json_out", [[], ["--json"]], ids=["text", "json"])
def test_add_warns_when_the_certificate_ends_within_30_days(
    world: World, json_out: list[str]
) -> None:
    # Issued a day ago for one day: it ends in about ten minutes.
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1) + dt.timedelta(minutes=10)
    issued = world.ca.issue("GA330100", "杭州市公安局", now=start, days=1)
    result = dept(world, "add", "GA330100", "--cert", str(_cert_file(world, issued)), *json_out)
    assert result.exit_code == 0, result.output
    ends = issued.certificate.not_valid_after_utc
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"the certificate of GA330100 ends {ends:%Y-%m-%d %H:%M} UTC" in warning
    assert "minutes)" in warning and "exchange-pki issue --renew" in warning
    if json_out:
        row = json.loads(result.stdout)
        assert row["state"] == "expires-soon" and row["cert_days_left"] == 0
    else:
        assert result.stdout.startswith("GA330100  杭州市公安局  [expires soon]")
    assert "GA330100" in listed(world)  # registered all the same


def test_add_of_a_long_lived_certificate_says_nothing_extra(world: World) -> None:
    issued = world.ca.issue("GA330100", "杭州市公安局")
    result = dept(world, "add", "GA330100", "--cert", str(_cert_file(world, issued)))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith("GA330100  杭州市公安局  [active]")
    assert "valid until" in result.stdout
