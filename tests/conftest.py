"""Shared fixtures: a throw-away CA and department certificates, made fresh by the tests.

No key or certificate is committed: everything is generated here (or by tests/pki/certgen.py
for deliberately broken certificates).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pki.ca import CertificateAuthority, IssuedCertificate
from pki.identity import DeptCode, Role, parse_networks
from pki.verify import TrustStore, load_crls

NOW = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)


@dataclass
class CAFixture:
    """A CA directory plus helpers to issue and to build trust stores from it."""

    ca: CertificateAuthority
    dir: Path

    def issue(
        self,
        code: str,
        name: str = "测试部门",
        ips: tuple[str, ...] = ("127.0.0.1",),
        role: Role = Role.DEPARTMENT,
        **kw: object,
    ) -> IssuedCertificate:
        return self.ca.issue(DeptCode(code), name, parse_networks(ips), role=role, **kw)  # type: ignore[arg-type]

    def trust(self, now: dt.datetime | None = None) -> TrustStore:
        """Roots + intermediates + a fresh CRL signed at ``now``."""
        self.ca.crl(now=now)
        return TrustStore((self.ca.root,), self.ca.chain, tuple(load_crls(self.dir / "crl.pem")))


def make_ca(path: Path, *, intermediate: bool = False, now: dt.datetime | None = None) -> CAFixture:
    ca = CertificateAuthority.init(
        path, "测试部收入认定中心", passphrase=None, intermediate=intermediate, now=now
    )
    return CAFixture(ca, path)


@pytest.fixture(scope="session")
def _session_ca_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Building CAs costs key generation; tests copy a ready-made directory instead.
    base = tmp_path_factory.mktemp("ca-template")
    make_ca(base / "plain").ca.close()
    make_ca(base / "inter", intermediate=True).ca.close()
    return base


def _copy_ca(template: Path, dest: Path) -> CAFixture:
    shutil.copytree(template, dest)
    return CAFixture(CertificateAuthority.open(dest), dest)


@pytest.fixture
def test_ca(_session_ca_template: Path, tmp_path: Path) -> Iterator[CAFixture]:
    """A root-only CA in a fresh directory."""
    ca = _copy_ca(_session_ca_template / "plain", tmp_path / "ca")
    yield ca
    ca.ca.close()


@pytest.fixture
def inter_ca(_session_ca_template: Path, tmp_path: Path) -> Iterator[CAFixture]:
    """A CA whose end-entity certificates are issued by an intermediate."""
    ca = _copy_ca(_session_ca_template / "inter", tmp_path / "ica")
    yield ca
    ca.ca.close()
