"""Pass/fail reports a ministry operator can file (部省 第六条: parties tested before admission).

``exchange-client selftest`` (the department's side) and ``exchange-server dept check`` (the
node's side) each run a list of :class:`Check` and print the same report: a header naming who,
what and when, one line per check with its verdict and what was seen, and the overall verdict.
The JSON form has a versioned schema. Nothing personal appears: checks speak of certificates,
addresses, codes and bundle ids.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from exchange_common.cli import console, emit_json
from exchange_common.errors import InputError
from exchange_common.fs import atomic_write

__all__ = [
    "Check",
    "ReportOutOpt",
    "Verdict",
    "overall",
    "print_report",
    "report_json",
    "report_text",
]

#: The ``--out`` option of a command that prints a report to file.
ReportOutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Also write the report to this file (to file it)."),
]


class Verdict(StrEnum):
    """One check's outcome. ``warn`` passes but needs attention; ``skip`` could not run because
    an earlier check failed."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


_MARK = {Verdict.PASS: "PASS", Verdict.WARN: "WARN", Verdict.FAIL: "FAIL", Verdict.SKIP: "SKIP"}


@dataclass(frozen=True)
class Check:
    """A named check, its verdict and what was seen (one line, no personal data)."""

    name: str
    verdict: Verdict
    detail: str

    def as_json(self) -> dict[str, str]:
        """``{"name", "verdict", "detail"}``."""
        return {"name": self.name, "verdict": self.verdict.value, "detail": self.detail}


def overall(checks: Sequence[Check]) -> Verdict:
    """``fail`` if any check failed or was skipped, else ``warn`` if any warned, else ``pass``."""
    verdicts = {c.verdict for c in checks}
    if verdicts & {Verdict.FAIL, Verdict.SKIP}:
        return Verdict.FAIL
    return Verdict.WARN if Verdict.WARN in verdicts else Verdict.PASS


def report_text(title: str, facts: Sequence[tuple[str, str]], checks: Sequence[Check]) -> str:
    """The report as people file it: ``title``, ``facts`` (label, value) lines, the checks, the
    overall verdict."""
    width = max((len(c.name) for c in checks), default=0)
    lines = [title, "=" * len(title)]
    lines += [f"{label}: {value}" for label, value in facts]
    lines.append("")
    lines += [f"[{_MARK[c.verdict]}] {c.name.ljust(width)}  {c.detail}" for c in checks]
    verdict = overall(checks)
    lines += ["", f"overall: {_MARK[verdict]}"]
    return "\n".join(lines) + "\n"


def report_json(
    schema: str, facts: dict[str, Any], checks: Sequence[Check], at: dt.datetime
) -> dict[str, Any]:
    """The report as a document: ``schema``, ``at`` (UTC), the ``facts``, the checks, the
    overall verdict and ``passed`` (true unless it failed)."""
    verdict = overall(checks)
    return {
        "schema": schema,
        "at": at.astimezone(dt.UTC).isoformat(timespec="seconds"),
        **facts,
        "checks": [c.as_json() for c in checks],
        "overall": verdict.value,
        "passed": verdict is not Verdict.FAIL,
    }


def print_report(
    text: str, doc: dict[str, Any], checks: Sequence[Check], *, out: Path | None, json_out: bool
) -> None:
    """What a report command ends with: ``text`` written to ``out`` (when given), ``doc`` on
    stdout with ``json_out`` else ``text``, and exit 1 when the overall verdict is ``fail``.
    Raises ``InputError`` E_IO when ``out`` cannot be written."""
    if out is not None:
        try:
            atomic_write(out, text.encode(), 0o644)
        except OSError as e:
            raise InputError(f"cannot write {out}: {e.strerror or e}", code="E_IO") from None
    if json_out:
        emit_json(doc)
    else:
        console.print(text, markup=False, highlight=False, end="")
    if overall(checks) is Verdict.FAIL:
        raise typer.Exit(1)
