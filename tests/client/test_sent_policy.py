"""The client's ``sent/`` under a policy: answered bundles older than ``[retention] sent_days``
go, bundles waiting for their receipt or never sent stay, whatever their age."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.config import DEFAULT_SENT_DAYS, load_config, save_config
from exchange_client.sent import prune_sent
from exchange_client.state import PushedBundle, locked_state
from exchange_common.errors import InputError

NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)


def _sealed(client_dir: Path, bid: str, days_ago: int, verdict: str) -> Path:
    created = (NOW - dt.timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")
    with locked_state(load_config(client_dir).state_path) as state:
        state.pushed[bid] = PushedBundle(bid, "data", created, 1, 10, "00" * 32, verdict=verdict)
    path = client_dir / "sent" / f"{bid}.bundle"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_bytes(b"sealed")
    return path


def test_only_answered_bundles_older_than_the_policy_go(client_dir: Path) -> None:
    old_ok = _sealed(client_dir, "old-accepted", 200, "accepted")
    old_no = _sealed(client_dir, "old-rejected", 100, "rejected")
    old_wait = _sealed(client_dir, "old-waiting", 400, "waiting")  # never answered: kept
    new_ok = _sealed(client_dir, "new-accepted", 10, "accepted")
    cfg = load_config(client_dir)
    assert cfg.sent_days == DEFAULT_SENT_DAYS == 90
    preview = prune_sent(cfg, NOW, dry_run=True)
    assert [p.bundle_id for p in preview] == ["old-accepted", "old-rejected"]
    assert old_ok.exists() and old_no.exists()  # a dry run changes nothing
    done = prune_sent(cfg, NOW)
    assert [p.bundle_id for p in done] == ["old-accepted", "old-rejected"]
    assert not old_ok.exists() and not old_no.exists()
    assert old_wait.exists() and new_ok.exists()
    assert prune_sent(cfg, NOW) == []  # nothing left to remove; records stay in the state
    r = CliRunner().invoke(app, ["status", "--dir", str(client_dir), "--json"])
    assert {"old-accepted", "old-rejected"} <= {
        p["bundle_id"] for p in json.loads(r.stdout)["pushed"]
    }


def test_zero_keeps_everything_and_bad_values_are_refused(client_dir: Path) -> None:
    path = _sealed(client_dir, "ancient", 5000, "accepted")
    cfg = load_config(client_dir)
    save_config(cfg.__class__(**{**cfg.__dict__, "sent_days": 0}))
    assert load_config(client_dir).sent_days == 0
    assert prune_sent(load_config(client_dir), NOW) == [] and path.exists()
    toml = client_dir / "client.toml"
    toml.write_text(toml.read_text().replace("sent_days = 0", "sent_days = -1"))
    with pytest.raises(InputError, match=r"retention\.sent_days"):
        load_config(client_dir)


def test_the_prune_command(client_dir: Path) -> None:
    _sealed(client_dir, "gone", 3650, "accepted")
    r = CliRunner().invoke(app, ["prune", "--dir", str(client_dir), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["dry_run"] is True and [x["bundle_id"] for x in doc["removed"]] == ["gone"]
    r = CliRunner().invoke(app, ["prune", "--dir", str(client_dir)])
    assert r.exit_code == 0 and "removed gone (data, accepted" in r.stdout
    r = CliRunner().invoke(app, ["prune", "--dir", str(client_dir)])
    assert "nothing to remove from sent/" in r.stdout
