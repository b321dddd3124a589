"""The README's main-job command must keep working end to end."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from exchange_server.admin.cli import app
from exchange_server.admin.demo import DEMO_DEPARTMENTS, run_demo


def test_demo_builds_a_verifiable_world(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", say=lines.append)
    assert (tmp_path / "demo" / "ca" / "root.pem").is_file()
    for code, _, _ in DEMO_DEPARTMENTS:
        assert (tmp_path / "demo" / "certs" / f"{code}.pem").is_file()
        key = tmp_path / "demo" / "certs" / f"{code}.key"
        assert key.stat().st_mode & 0o777 == 0o600
    assert any("stock OpenSSL" in s for s in result.steps)
    assert not any("disagrees" in s for s in result.steps)
    assert len(lines) == len(result.steps)
    # the node stage ran through the real client: both pushes accepted, receipts held
    pushed = [s for s in result.steps if "with exchange-client: node receipt accepted" in s]
    assert {s.split()[0] for s in pushed} == {"MZ330100", "RS330100"}
    held = [s for s in result.steps if "holds the node's signed receipt" in s and "accepted" in s]
    assert {s.split()[0] for s in held} == {"MZ330100", "RS330100"}
    receipts = list((tmp_path / "demo" / "clients").glob("*/pulled/receipt-*.bundle"))
    assert len(receipts) == 3  # 人社's push and answer, 民政's query
    # the relayed resource: a deadline in working days, 人社's answer, the final segment
    assert any("RS-JY-01: pending" in s and "due 20" in s for s in result.steps)
    assert any("人社 answered it with exchange-client respond" in s and "accepted" in s
               for s in result.steps)  # fmt: skip
    assert any("segment 2 (final; answered)" in s for s in result.steps)
    assert any("status of the query: answered" in s for s in result.steps)
    # every upload of the demo (人社's push and answer, 民政's query) was timed by stage
    timed = [s for s in result.steps if s.startswith("the pipeline timed each of its")]
    assert len(timed) == 1 and int(timed[0].split()[6]) >= 3, timed
    # the newest: the monitor answered, the trail verified and an extract checked offline
    assert any(s.startswith("the monitor's /status.json: uploads") for s in result.steps)
    assert any("audit trail" not in s and "audit verify:" in s and "intact under" in s
               for s in result.steps)  # fmt: skip
    assert any("verified offline by exchange-pki audit verify" in s for s in result.steps)
    assert (tmp_path / "demo" / "audit-MZ330100.json").is_file()
    _no_personal_data_anywhere(tmp_path / "demo", result.steps)


def _no_personal_data_anywhere(demo: Path, steps: list[str]) -> None:
    """Every log, status, audit output and extract the demo's node produced holds no ID number
    and no full name of the test data (the persons list and 人社's dataset)."""
    with (demo / "data" / "persons.csv").open(encoding="utf-8", newline="") as fh:
        persons = list(csv.DictReader(fh))
    ids = {p["身份证号"] for p in persons} | {p["身份证号"].lower() for p in persons}
    names = {p["姓名"] for p in persons if len(p["姓名"]) >= 2}
    with (demo / "data" / "rs_social_insurance.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            ids.add(row["公民身份号码"])
            names.add(row["姓名"])
    home = str(demo / "node")
    runner = CliRunner()
    outputs = {
        "node.log": (demo / "node.log").read_text("utf-8"),
        "steps": "\n".join(steps),
        "extract": (demo / "audit-MZ330100.json").read_text("utf-8"),
        "checkpoint": (demo / "node" / "audit" / "checkpoint").read_text("utf-8"),
    }
    for args in (
        ["status", "--json"],
        ["status"],
        ["audit", "list", "--limit", "10000", "--json"],
        ["audit", "list", "--limit", "10000"],
        ["audit", "verify", "--json"],
    ):
        outputs[" ".join(args)] = runner.invoke(app, [*args, "--home", home]).stdout
    leaks = {
        where: sorted(x for x in ids | names if x and x in text) for where, text in outputs.items()
    }
    assert all(not found for found in leaks.values()), {w: f[:3] for w, f in leaks.items() if f}


def test_demo_refuses_to_overwrite_without_fresh(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["demo", "--dir", str(target)])
    assert res.exit_code == 3
    assert "already exists" in res.output
    assert (target / "keep.txt").read_text() == "mine"


def test_demo_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "exchange-server"
    proc = subprocess.run(
        [str(exe), "demo", "--dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Done." in proc.stdout
