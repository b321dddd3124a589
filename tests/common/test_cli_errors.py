"""``fail_on_error`` and ``error_json``: CLIs show the code, its registry hint, and in JSON
the registry's texts."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from exchange_common.cli import EXIT_INTERRUPTED, error_json, fail_on_error
from exchange_common.codes import REGISTRY
from exchange_common.errors import CAError, ExchangeError, InputError, PeerError


def _app(error: ExchangeError) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @fail_on_error
    def run() -> None:
        raise error

    return app


def test_cli_prints_error_cause_and_hint() -> None:
    error = PeerError("bundle rejected: signature invalid", code="E_SIGNATURE", detail="why")
    result = CliRunner().invoke(_app(error), [])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: bundle rejected: signature invalid (E_SIGNATURE)",
        "  cause: why",
        f"hint: {REGISTRY['E_SIGNATURE'].operator_hint}",
    ]


def test_cli_prints_no_hint_for_an_unregistered_code() -> None:
    result = CliRunner().invoke(_app(InputError("odd", code="E_NOT_REGISTERED")), [])
    assert result.exit_code == 3
    assert result.stderr.splitlines() == ["error: odd (E_NOT_REGISTERED)"]


def test_ctrl_c_prints_interrupted_and_exits_130() -> None:
    app = typer.Typer()

    @app.command()
    @fail_on_error
    def run() -> None:
        raise KeyboardInterrupt

    result = CliRunner().invoke(app, [])
    assert result.exit_code == EXIT_INTERRUPTED == 130
    assert result.stderr.splitlines() == ["interrupted"]
    assert "Traceback" not in result.output and "Aborted" not in result.output


def test_error_json_carries_code_and_texts() -> None:
    data = error_json(CAError("no such serial 1A", code="E_UNKNOWN_SERIAL"))
    assert data == {
        "code": "E_UNKNOWN_SERIAL",
        "reason": "no such serial 1A",
        "text": REGISTRY["E_UNKNOWN_SERIAL"].peer_text,
        "hint": REGISTRY["E_UNKNOWN_SERIAL"].operator_hint,
    }
    assert error_json(InputError("odd", code="E_X_UNKNOWN"))["hint"] is None
