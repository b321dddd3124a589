from __future__ import annotations

import datetime as dt

from pki.verify import verify_certificate
from tests.conftest import CAFixture


def test_issued_certificate_verifies_with_identity(inter_ca: CAFixture) -> None:
    issued = inter_ca.issue("MZ330100", "杭州市民政局", ("10.1.0.0/16", "127.0.0.1"))
    now = dt.datetime.now(dt.UTC)
    ident = verify_certificate(
        issued.certificate, inter_ca.trust(), now=now, chain=issued.chain[1:]
    )
    assert ident.code == "MZ330100"
    assert ident.name == "杭州市民政局"
    assert ident.allows_address("10.1.200.3")
    assert not ident.allows_address("10.2.0.1")
    assert len(ident.chain) == 3
