"""Bundle ids on the command line: the first characters of one id are enough; a beginning
several ids share is a usage error (exit 2) that lists them, and nothing is guessed."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from exchange_client.cli import app
from exchange_client.ids import MAX_CANDIDATES, resolve_id
from exchange_client.state import PulledItem, PushedBundle, locked_state

runner = CliRunner()

A = "3f2c8a6e-5d1b-4c1e-9a57-0c2d5e7f9b10"
B = "3f2c9b00-0000-4000-8000-000000000001"
C = "7a00e1f2-0000-4000-8000-000000000002"


def _resolve(text: str, known: list[str]) -> str | None:
    return resolve_id(text, known, what="bundles", param="BUNDLE_ID")


def test_a_whole_id_or_a_unique_beginning_names_it() -> None:
    assert _resolve(A, [A, B, C]) == A
    assert _resolve("3f2c8", [A, B, C]) == A
    assert _resolve(" 7A ", [A, B, C]) == C  # case and surrounding spaces do not matter
    assert _resolve("0", [A, B, C]) is None


def test_a_shared_beginning_lists_the_candidates_and_names_none() -> None:
    with pytest.raises(typer.BadParameter) as e:
        _resolve("3f2c", [A, B, C])
    assert A in str(e.value) and B in str(e.value) and C not in str(e.value)
    many = [f"3f{n:02d}0000-0000-4000-8000-000000000000" for n in range(MAX_CANDIDATES + 3)]
    with pytest.raises(typer.BadParameter, match="and 3 more"):
        _resolve("3f", many)
    with pytest.raises(typer.BadParameter, match="empty"):
        _resolve("  ", [A])


def _pushed_queries(directory: Path, *ids: str) -> None:
    with locked_state(directory / "state.json") as state:
        for i in ids:
            state.pushed[i] = PushedBundle(i, "query", "2026-12-01T00:00:00Z", 1, 10, "ab",
                                           uploaded_at="2026-12-01T00:00:01Z")  # fmt: skip


def test_status_takes_a_query_prefix(client_dir: Path) -> None:
    _pushed_queries(client_dir, A, C)
    r = runner.invoke(app, ["status", "--dir", str(client_dir), "3f", "--json"])
    assert r.exit_code == 0, r.output
    assert r.stdout.count(A) >= 1 and '"query": "' + A in r.stdout


def test_an_ambiguous_prefix_is_a_usage_error_listing_the_candidates(client_dir: Path) -> None:
    _pushed_queries(client_dir, A, B)
    for args in (["status", "3f2c"], ["wait", "3f2c", "--retries", "0"]):
        r = runner.invoke(app, [args[0], "--dir", str(client_dir), *args[1:]])
        assert r.exit_code == 2, r.output
        assert A in r.output and B in r.output and "give more characters" in r.output
        assert "Traceback" not in r.output


def test_respond_takes_a_relay_prefix_and_refuses_an_ambiguous_one(
    client_dir: Path, tmp_path: Path
) -> None:
    with locked_state(client_dir / "state.json") as state:
        for n, i in enumerate((A, B)):
            state.pulled[f"relay-{n}.bundle"] = PulledItem(
                f"relay-{n}.bundle", str(n), 1, "2026-12-01T00:00:00Z", "opened", "relay", i
            )
    answer = tmp_path / "answer.csv"
    answer.write_text("x\n1\n", encoding="utf-8")
    base = ["respond", "--dir", str(client_dir), "--retries", "0"]
    r = runner.invoke(app, [*base, "--to-query", "3f2c", str(answer)])
    assert r.exit_code == 2 and A in r.output and B in r.output, r.output
    assert not list((client_dir / "sent").glob("*.bundle"))  # nothing sealed
    r = runner.invoke(app, [*base, "--to-query", "3f2c8", str(answer)])
    assert r.exit_code == 5, r.output  # resolved, sealed, then the (absent) node is unreachable
    [sealed] = (client_dir / "sent").glob("*.bundle")
    with locked_state(client_dir / "state.json") as state:
        assert state.pushed[sealed.stem].in_reply_to == A
