"""What ``exchange-pki revoke`` shows and asks before it revokes anything.

A revocation is final, and one of a node's certificate stops that node's exchange with every
department: a mistyped serial once did exactly that. So the command first shows each
certificate it would revoke (name, department code, profile, serial, subject, validity) and asks
on the terminal; ``--yes`` answers for scripts. Without a terminal and without ``--yes`` it
refuses as a usage error (exit 2), so a pipe or a cron job never revokes on a question nobody
saw. :func:`describe_targets` is pure; :func:`confirm_revocation` talks to the terminal.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence

import typer
from cryptography import x509

from exchange_common.cli import err_console
from pki.cadb import CertRecord
from pki.identity import Role, subject_text

__all__ = ["NoTerminal", "confirm_revocation", "describe_targets"]


class NoTerminal(typer.BadParameter):
    """Usage error (exit 2): a confirmation is needed and there is no terminal to ask on."""

    def format_message(self) -> str:
        """The message alone (not click's "Invalid value for ..." wording)."""
        return self.message


def _profile(rec: CertRecord) -> str:
    if rec.role == Role.NODE.value:
        return (
            f"NODE (server) certificate of node {rec.dept}: revoking it stops this node's "
            "exchange with every department"
        )
    return f"department certificate of {rec.dept}"


def _validity(rec: CertRecord, now: dt.datetime) -> str:
    span = f"{rec.not_before:%Y-%m-%d} until {rec.not_after:%Y-%m-%d %H:%M} UTC"
    state = rec.state(now)
    if state == "valid":
        return f"{span} ({(rec.not_after - now).days} days left)"
    return f"{span} ({state})"


def describe_targets(
    records: Sequence[CertRecord], reason: x509.ReasonFlags, now: dt.datetime
) -> list[str]:
    """The lines shown before revoking ``records`` with ``reason`` at ``now`` (no I/O)."""
    count = f"{len(records)} certificate{'s' if len(records) != 1 else ''}"
    lines = [f"About to revoke {count} (reason: {reason.value}):"]
    for rec in records:
        subject = subject_text(x509.load_pem_x509_certificate(rec.pem.encode()).subject)
        lines += [
            "",
            f"  {rec.name} ({rec.dept})",
            f"    profile  {_profile(rec)}",
            f"    serial   {rec.serial}",
            f"    subject  {subject}",
            f"    valid    {_validity(rec, now)}",
            f"    issued   {rec.issued_at:%Y-%m-%d %H:%M} UTC by the {rec.issuer} CA"
            + (f", renewing {rec.renewal_of}" if rec.renewal_of else ""),
        ]
    lines += [
        "",
        "A revocation is final: relying parties refuse the certificate once the next CRL is "
        "published (exchange-pki crl).",
    ]
    return lines


def confirm_revocation(lines: Sequence[str], *, yes: bool) -> None:
    """Return when the revocation may go ahead: ``yes``, or the operator answered yes.

    Shows ``lines`` on stderr (stdout stays clean for ``--json``) and asks on the terminal.
    Raises :class:`NoTerminal` (exit 2) when stdin is not a terminal and ``yes`` is false, and
    ``typer.Exit(1)`` after ``nothing revoked`` when the operator declines (or ends the input).
    """
    if yes:
        return
    for line in lines:
        err_console.print(line, markup=False)
    if not sys.stdin.isatty():
        raise NoTerminal(
            "revoke asks for confirmation and the input is not a terminal: check the "
            "certificate shown above (exchange-pki list), then repeat the command with --yes"
        )
    try:
        agreed = typer.confirm("Revoke?", default=False, err=True)
    except typer.Abort:  # end of input or Ctrl-C at the question
        agreed = False
    if not agreed:
        err_console.print("nothing revoked", markup=False)
        raise typer.Exit(1)
