"""``import`` from a medium that still holds the department's own ``export``: the bundle is for
the node's drop folder, so it is named as ignored (not rejected, exit 0) and nothing is
recorded; a file merely named like it is checked like any other and refused."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.state import read_state

runner = CliRunner()


def _export(client_dir: Path, usb: Path, tmp_path: Path) -> str:
    src = tmp_path / "recheck.txt"
    src.write_text("recheck list\n", encoding="utf-8")
    r = runner.invoke(app, ["export", "--dir", str(client_dir), "--kind", "recheck",
                            "--to", str(usb), "--json", str(src)])  # fmt: skip
    assert r.exit_code == 0, r.output
    return str(json.loads(r.stdout)["bundle_id"])


def test_import_ignores_the_departments_own_exported_bundle(
    client_dir: Path, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    bundle_id = _export(client_dir, usb, tmp_path)
    r = runner.invoke(app, ["import", "--dir", str(client_dir), "--from", str(usb)])
    assert r.exit_code == 0, r.output
    assert f"your own recheck bundle {bundle_id}" in r.stdout and "ignored" in r.stdout
    assert "REJECTED" not in r.stdout
    r = runner.invoke(app, ["import", "--dir", str(client_dir), "--from", str(usb), "--json"])
    assert r.exit_code == 0, r.output
    [item] = json.loads(r.stdout)["imported"]
    assert item == {"name": f"{bundle_id}.bundle", "status": "ignored", "kind": "recheck",
                    "bundle_id": bundle_id}  # fmt: skip
    state = read_state(client_dir / "state.json")
    assert state.pulled == {} and state.pushed[bundle_id].verdict == "waiting"
    assert not (client_dir / "rejected").exists() or not any((client_dir / "rejected").iterdir())


def test_a_file_only_named_like_an_own_bundle_is_checked(client_dir: Path, tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    bundle_id = _export(client_dir, usb, tmp_path)
    planted = usb / f"{bundle_id}.bundle"
    planted.write_bytes(b"x" * planted.stat().st_size)  # same name and size, other bytes
    r = runner.invoke(app, ["import", "--dir", str(client_dir), "--from", str(usb)])
    assert r.exit_code == 1, r.output
    assert f"{planted.name}: REJECTED, not opened (E_FORMAT: " in r.stdout  # code and words
    assert read_state(client_dir / "state.json").pulled[planted.name].status == "rejected"
