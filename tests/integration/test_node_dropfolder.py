"""A running node imports bundles copied into its drop folder (removable media, 办法 第十七条)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until

pytestmark = pytest.mark.integration


def test_running_node_imports_dropped_bundle_and_receipts_the_signer(tmp_path: Path) -> None:
    with NodeHarness(tmp_path / "node", [DeptSpec("RS330100", "杭州市人社局")]) as h:
        body = "参保地行政区划代码,险种类型\n330100,基本养老\n".encode()
        bundle = h.seal("RS330100", body, tmp_path / "usb.bundle", member="rs.csv")
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
