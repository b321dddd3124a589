"""A running node imports bundles copied into its drop folder (removable media, 办法 第十七条)."""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import pytest

from pki.bundle import Member, seal_to_file
from pki.keys import load_certificates, load_private_key
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = pytest.mark.integration


def test_running_node_imports_dropped_bundle_and_receipts_the_signer(tmp_path: Path) -> None:
    with NodeHarness(tmp_path / "node", [DeptSpec("RS330100", "杭州市人社局")]) as h:
        cred = h.depts["RS330100"]
        bundle = tmp_path / "usb.bundle"
        body = "参保地行政区划代码,险种类型\n330100,基本养老\n".encode()
        seal_to_file(
            [Member("rs.csv", io.BytesIO(body), size=len(body))],
            bundle,
            signer_key=load_private_key(cred.key_path),
            signer_chain=load_certificates(cred.cert_path),
            recipients=[load_certificates(h.root / "creds" / "NODE01.pem")[0]],
            kind="data",
            now=dt.datetime.now(dt.UTC),
        )
        drop = h.home / "drop"
        shutil.copyfile(bundle, drop / ".copying")
        (drop / ".copying").rename(drop / "rs-2026-11.bundle")
        up = wait_until(
            lambda: [u for u in h.uploads() if u.state == "done"],
            timeout=30,
            what="the dropped bundle to be processed",
        )[0]
        assert up.source == "drop" and up.dept_code == "RS330100"
        assert (h.outbox("RS330100") / str(up.receipt_name)).is_file()
        assert not (drop / "rs-2026-11.bundle").exists()
