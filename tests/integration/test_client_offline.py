"""Removable media (办法 第十七条): export -> node drop folder -> receipt -> import.

No network between client and node here: the client writes its sealed bundle to a "USB"
folder, the node's operator copies it into the node's drop folder, and copies the receipt
back onto the medium, which the client imports with the same checks as ``pull``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until, write_application
from tests.integration.test_client_node import MZ, RS, cli, init_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("offline"), [DeptSpec(MZ), DeptSpec(RS)]) as h:
        yield h


def _client_dir(node: NodeHarness, tmp_path: Path) -> Path:
    directory = tmp_path / "client"
    r = cli(*init_args(node, directory))
    assert r.exit_code == 0, r.output
    return directory


def test_export_drop_receipt_import_round_trip(node: NodeHarness, tmp_path: Path) -> None:
    client = _client_dir(node, tmp_path)
    usb = tmp_path / "usb"
    usb.mkdir()
    persons = tmp_path / "persons.csv"
    persons.write_text("身份证号,姓名,授权编号\n11010519491231002X,张三,SQ-1\n", encoding="gb18030")
    app = write_application(tmp_path / "app.json", 1)
    r = cli(
        "export", "--dir", client, "--kind", "query", "--fields-json", app, "--to", usb, "--json",
        persons,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    exported = usb / f"{out['bundle_id']}.bundle"
    assert exported.is_file() and out["exported_to"] == str(exported)
    assert [p.name for p in usb.iterdir()] == [exported.name]  # nothing half-written left
    # the node operator carries the medium to the node
    shutil.copyfile(exported, node.home / "drop" / ".copying")
    (node.home / "drop" / ".copying").rename(node.home / "drop" / exported.name)
    up = wait_until(
        lambda: [u for u in node.uploads(MZ) if u.bundle_id == out["bundle_id"] and u.receipt_name],
        timeout=30,
        what="the dropped bundle's receipt",
    )[0]
    back = tmp_path / "usb-back"
    back.mkdir()
    shutil.copyfile(node.outbox(MZ) / up.receipt_name, back / up.receipt_name)
    r = cli("import", "--dir", client, "--from", back, "--json")
    assert r.exit_code == 0, r.output
    [item] = json.loads(r.stdout)["imported"]
    assert item["verdict"] == "accepted" and item["receipt_for"] == out["bundle_id"]
    r = cli("status", "--dir", client, "--json")
    [pushed] = json.loads(r.stdout)["pushed"]
    assert pushed["verdict"] == "accepted"
    # importing the same medium again processes nothing
    r = cli("import", "--dir", client, "--from", back, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["imported"] == []


def test_import_refuses_a_bundle_not_signed_by_the_node(node: NodeHarness, tmp_path: Path) -> None:
    client = _client_dir(node, tmp_path)
    usb = tmp_path / "usb"
    usb.mkdir()
    # a "receipt" forged by another department, and a garbage file, on the medium
    node.seal(RS, b"verdict,accepted\n", usb / "receipt-forged.bundle", kind="data")
    (usb / "junk.bundle").write_bytes(b"not a bundle")
    r = cli("import", "--dir", client, "--from", usb, "--json")
    assert r.exit_code == 1
    results = {i["name"]: i for i in json.loads(r.stdout)["imported"]}
    assert results["receipt-forged.bundle"]["reason_code"] == "E_NOT_NODE"
    assert results["junk.bundle"]["status"] == "rejected"
    assert not (client / "received").exists() or not any((client / "received").rglob("*.csv"))
    assert sorted(p.name for p in usb.iterdir()) == ["junk.bundle", "receipt-forged.bundle"]


def test_export_to_a_missing_folder_is_a_clear_error(node: NodeHarness, tmp_path: Path) -> None:
    client = _client_dir(node, tmp_path)
    data = tmp_path / "d.csv"
    data.write_text("id\n1\n", encoding="utf-8")
    r = cli("export", "--dir", client, "--kind", "data", "--to", tmp_path / "nope", data)
    assert r.exit_code == 3
    assert "does not exist" in r.output and "E_NOT_FOUND" in r.output
    assert not any((client / "sent").glob("*.bundle"))  # nothing was sealed
    assert json.loads(cli("status", "--dir", client, "--json").stdout)["pushed"] == []
