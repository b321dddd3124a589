"""Keys the CA generates and stores without a passphrase are announced, and owner-only.

An operator once handed out department keys written in the clear without a word. Now every
such key gets a ``warning:`` line on stderr (also with ``--json``, whose stdout stays pure JSON)
naming the file, saying it is unencrypted and owner-only, and how to get an encrypted one. The
mode is 0600 whatever the umask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import Result

from pki.ca import CA_PASSPHRASE_ENV
from pki.keys import KEY_PASSPHRASE_ENV, load_private_key
from tests.conftest import CAFixture
from tests.pki import certgen
from tests.pki.test_cli import make_csr, run_cli


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable: the mode must not depend on it."""
    old = os.umask(0)
    yield
    os.umask(old)


def _issue(
    ca: CAFixture, out: Path, *extra: str, env: dict[str, str | None] | None = None
) -> Result:
    return run_cli(
        "issue", "--ca-dir", ca.dir, "--dept", "MZ330100", "--name", "杭州市民政局",
        "--out", out, *extra, env=env,
    )  # fmt: skip


@pytest.mark.usefixtures("open_umask")
def test_generated_key_without_passphrase_warns_and_is_owner_only(
    test_ca: CAFixture, tmp_path: Path
) -> None:
    result = _issue(test_ca, tmp_path / "out")
    assert result.exit_code == 0, result.output
    key = tmp_path / "out" / "MZ330100.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" not in key.read_bytes()
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"private key {key} is NOT encrypted" in warning
    assert "owner-only (mode 0600)" in warning
    assert KEY_PASSPHRASE_ENV in warning and "--csr" in warning  # how to do better
    assert result.stdout.startswith("issued department certificate")


def test_json_output_stays_json_and_says_the_key_is_unencrypted(
    test_ca: CAFixture, tmp_path: Path
) -> None:
    result = _issue(test_ca, tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["key_encrypted"] is False
    assert "NOT encrypted" in result.stderr


def test_no_warning_for_an_encrypted_key_or_a_csr(test_ca: CAFixture, tmp_path: Path) -> None:
    result = _issue(test_ca, tmp_path / "a", "--json", env={KEY_PASSPHRASE_ENV: "dept secret"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key_encrypted"] is True
    assert result.stderr == ""
    key = tmp_path / "a" / "MZ330100.key"
    assert key.stat().st_mode & 0o777 == 0o600
    load_private_key(key, b"dept secret")

    csr = tmp_path / "rs.csr"
    csr.write_bytes(make_csr(certgen.new_key()))
    result = run_cli(
        "issue", "--ca-dir", test_ca.dir, "--dept", "RS330100", "--name", "人社", "--csr", csr,
        "--out", tmp_path / "b", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key_encrypted"] is None  # the CA never had the key
    assert result.stderr == ""


@pytest.mark.usefixtures("open_umask")
@pytest.mark.parametrize("json_out", [[], ["--json"]], ids=["text", "json"])
def test_ca_keys_without_passphrase_warn(tmp_path: Path, json_out: list[str]) -> None:
    ca = tmp_path / "ca"
    result = run_cli("init", "--ca-dir", ca, "--name", "X", "--no-passphrase", "--intermediate",
                     *json_out)  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("root.key", "intermediate.key"):
        assert (ca / name).stat().st_mode & 0o777 == 0o600
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"private keys {ca / 'root.key'}, {ca / 'intermediate.key'} are NOT encrypted" in warning
    assert "owner-only (mode 0600)" in warning and CA_PASSPHRASE_ENV in warning
    if json_out:
        assert json.loads(result.stdout)["encrypted"] is False


def test_encrypted_ca_keys_give_no_warning(tmp_path: Path) -> None:
    result = run_cli("init", "--ca-dir", tmp_path / "ca", "--name", "X",
                     env={CA_PASSPHRASE_ENV: "a long passphrase"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
