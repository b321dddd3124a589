"""``exchange-pki revoke`` shows what it would revoke and asks first (a mistyped serial once
revoked a node's own certificate).

Each attack here is an operator's slip: no answer (a pipe, cron), a "no" at the question, a
node certificate, a serial nobody issued, a renewal issued while the operator was reading. Each
test asserts that the CA directory did not change and that the published CRL (read back with
cryptography and with stock ``openssl crl -text``) does not list the certificate. The terminal
tests run the installed console script on a real pseudo-terminal.
"""

from __future__ import annotations

import datetime as dt
import os
import select
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from exchange_common.errors import CAError
from pki.ca import CA_PASSPHRASE_ENV
from pki.identity import DeptCode
from pki.keys import KEY_PASSPHRASE_ENV
from pki.revoke_prompt import describe_targets
from tests.conftest import CAFixture
from tests.pki.test_cli import (
    assert_one_line_error,
    exchange_pki,
    run_cli,
    serial_of,
    snapshot,
)


def _issue(ca: CAFixture, out: Path, dept: str = "MZ330100", *extra: str) -> Path:
    result = run_cli(
        "issue", "--ca-dir", ca.dir, "--dept", dept, "--name", "杭州市民政局", "--out", out,
        *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / f"{dept}.pem"


def _published_serials(ca: CAFixture, tmp: Path) -> set[str]:
    """Publish a CRL now and return the serials it lists (cryptography, and OpenSSL if here)."""
    out = tmp / "publish" / "crl.pem"
    assert run_cli("crl", "--ca-dir", ca.dir, "--out", out).exit_code == 0
    crl = x509.load_pem_x509_crl(out.read_bytes())  # root-only CA: one CRL
    serials = {format(r.serial_number, "X") for r in crl}
    if shutil.which("openssl") is not None:
        text = subprocess.run(
            ["openssl", "crl", "-in", str(out), "-noout", "-text"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        listed = {
            line.split(":", 1)[1].strip().lstrip("0")
            for line in text.splitlines()
            if line.strip().startswith("Serial Number:")
        }
        assert listed == serials, text
        if not serials:
            assert "No Revoked Certificates." in text
    return serials


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (CA_PASSPHRASE_ENV, KEY_PASSPHRASE_ENV)}
    env["COLUMNS"] = "200"
    return env


def on_terminal(args: list[str | Path], answer: str | None) -> tuple[int, str]:
    """Run ``exchange-pki ARGS`` with stdin, stdout and stderr on a fresh pseudo-terminal;
    type ``answer`` and Enter at the ``Revoke?`` question. Returns (exit code, screen text)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*exchange_pki(), *map(str, args)],
        stdin=slave, stdout=slave, stderr=slave, env=_env(), start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    screen = b""
    answered = answer is None
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, f"no output for 60 s; so far: {screen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            if not answered and b"Revoke?" in screen:
                assert answer is not None
                os.write(master, answer.encode() + b"\r")
                answered = True
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, screen.decode("utf-8", errors="replace").replace("\r\n", "\n")


# --- no terminal: --yes or nothing -------------------------------------------------------------


def test_no_terminal_and_no_yes_refuses_and_revokes_nothing(
    test_ca: CAFixture, tmp_path: Path
) -> None:
    serial = serial_of(_issue(test_ca, tmp_path / "out"))
    before = snapshot(test_ca.dir)
    result = run_cli("revoke", "--ca-dir", test_ca.dir, "--serial", serial)  # stdin: no terminal
    assert result.exit_code == 2, result.output  # a usage error
    assert "--yes" in result.stderr and "not a terminal" in result.stderr
    assert serial in result.stderr and "杭州市民政局 (MZ330100)" in result.stderr  # shown, not done
    assert result.stdout == "" and "Traceback" not in result.output
    assert snapshot(test_ca.dir) == before
    assert _published_serials(test_ca, tmp_path) == set()


def test_no_terminal_in_a_real_shell_pipe(test_ca: CAFixture, tmp_path: Path) -> None:
    """The cron / pipe case as the shell sees it: exit 2, a message, no traceback."""
    serial = serial_of(_issue(test_ca, tmp_path / "out"))
    before = snapshot(test_ca.dir)
    proc = subprocess.run(
        [*exchange_pki(), "revoke", "--ca-dir", str(test_ca.dir), "--serial", serial],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_env(), check=False,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert snapshot(test_ca.dir) == before


def test_yes_revokes_and_the_next_crl_lists_it(test_ca: CAFixture, tmp_path: Path) -> None:
    serial = serial_of(_issue(test_ca, tmp_path / "out"))
    other = serial_of(_issue(test_ca, tmp_path / "out", "RS330100"))
    result = run_cli(
        "revoke", "--ca-dir", test_ca.dir, "--serial", serial, "--reason", "keyCompromise", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"revoked {serial} (department MZ330100 杭州市民政局")
    assert result.stderr == ""  # --yes: no question, no preview
    assert _published_serials(test_ca, tmp_path) == {serial}
    assert other != serial


# --- the node's own certificate needs --allow-node -------------------------------------------


@pytest.mark.parametrize("by", ["serial", "dept"])
def test_node_certificate_needs_allow_node_even_with_yes(
    test_ca: CAFixture, tmp_path: Path, by: str
) -> None:
    node = serial_of(_issue(test_ca, tmp_path / "out", "NODE01", "--node"))
    target = ["--serial", node] if by == "serial" else ["--dept", "NODE01"]
    before = snapshot(test_ca.dir)
    result = run_cli("revoke", "--ca-dir", test_ca.dir, *target, "--yes")
    line = assert_one_line_error(result, 3, "E_NODE_CERT")
    assert "NODE certificate of NODE01" in line and "--allow-node" in line
    assert snapshot(test_ca.dir) == before
    assert _published_serials(test_ca, tmp_path) == set()

    done = run_cli("revoke", "--ca-dir", test_ca.dir, *target, "--yes", "--allow-node")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"revoked {node} (node NODE01")
    assert _published_serials(test_ca, tmp_path) == {node}


def test_node_certificate_is_named_as_such_in_the_preview(
    test_ca: CAFixture, tmp_path: Path
) -> None:
    _issue(test_ca, tmp_path / "out", "NODE01", "--node")
    now = dt.datetime.now(dt.UTC)
    targets = test_ca.ca.revocation_targets(dept=DeptCode("NODE01"), allow_node=True, now=now)
    text = "\n".join(describe_targets(targets, x509.ReasonFlags.superseded, now))
    assert "NODE (server) certificate of node NODE01" in text
    assert "stops this node's exchange with every department" in text
    assert f"serial   {targets[0].serial}" in text
    assert "subject  CN=杭州市民政局,serialNumber=NODE01,OU=node,C=CN" in text


# --- a serial nobody issued ---------------------------------------------------------------------


@pytest.mark.parametrize("yes", [[], ["--yes"]], ids=["asking", "yes"])
def test_mistyped_serial_is_a_clear_error(
    test_ca: CAFixture, tmp_path: Path, yes: list[str]
) -> None:
    serial = serial_of(_issue(test_ca, tmp_path / "out"))
    typo = serial[:-1] + ("0" if serial[-1] != "0" else "1")
    before = snapshot(test_ca.dir)
    result = run_cli("revoke", "--ca-dir", test_ca.dir, "--serial", typo, *yes)
    line = assert_one_line_error(result, 4, "E_UNKNOWN_SERIAL")
    assert typo in line
    assert snapshot(test_ca.dir) == before


# --- a terminal: the operator reads, then answers ------------------------------------------------


def test_terminal_no_revokes_nothing(test_ca: CAFixture, tmp_path: Path) -> None:
    pem = _issue(test_ca, tmp_path / "out")
    serial = serial_of(pem)
    not_after = x509.load_pem_x509_certificate(pem.read_bytes()).not_valid_after_utc
    before = snapshot(test_ca.dir)
    code, screen = on_terminal(["revoke", "--ca-dir", test_ca.dir, "--serial", serial], "n")
    assert code == 1, screen
    assert "About to revoke 1 certificate (reason: unspecified)" in screen
    assert "杭州市民政局 (MZ330100)" in screen
    assert "department certificate of MZ330100" in screen
    assert f"serial   {serial}" in screen
    assert f"until {not_after:%Y-%m-%d}" in screen
    assert "Revoke? [y/N]" in screen
    assert "nothing revoked" in screen and "Traceback" not in screen
    assert snapshot(test_ca.dir) == before
    assert _published_serials(test_ca, tmp_path) == set()


def test_terminal_enter_alone_means_no(test_ca: CAFixture, tmp_path: Path) -> None:
    serial = serial_of(_issue(test_ca, tmp_path / "out"))
    before = snapshot(test_ca.dir)
    code, screen = on_terminal(["revoke", "--ca-dir", test_ca.dir, "--serial", serial], "")
    assert code == 1 and "nothing revoked" in screen
    assert snapshot(test_ca.dir) == before


def test_terminal_yes_revokes(test_ca: CAFixture, tmp_path: Path) -> None:
    serial = serial_of(_issue(test_ca, tmp_path / "out"))
    code, screen = on_terminal(
        ["revoke", "--ca-dir", test_ca.dir, "--dept", "MZ330100", "--reason", "superseded"], "y"
    )
    assert code == 0, screen
    assert f"revoked {serial}" in screen and ": superseded" in screen
    assert _published_serials(test_ca, tmp_path) == {serial}


# --- what was confirmed is what is revoked --------------------------------------------------------


def test_a_renewal_issued_while_confirming_is_not_revoked_unseen(test_ca: CAFixture) -> None:
    first = test_ca.issue("MZ330100")
    shown = test_ca.ca.revocation_targets(dept=DeptCode("MZ330100"))
    assert [r.serial for r in shown] == [first.record.serial]
    second = test_ca.issue("MZ330100", renew=True)  # another operator, meanwhile
    events = test_ca.ca.db.check_integrity()
    with pytest.raises(CAError) as info:
        test_ca.ca.revoke(dept=DeptCode("MZ330100"), expected=[r.serial for r in shown])
    assert info.value.code == "E_CONCURRENT"
    assert second.record.serial in info.value.message
    assert test_ca.ca.db.check_integrity() == events
    assert all(r.revoked_at is None for r in test_ca.ca.records())
