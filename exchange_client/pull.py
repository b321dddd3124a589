"""Download what the node left in ``/outbox``, verify it, open it, remember it.

The order is python-tuf's: download into a private folder, verify (node signature by the
pinned certificate, chain, CRL, times), and only then open and record. A file that fails
verification is moved to ``DIR/rejected/`` with a ``.reason.json`` beside it and is never
opened. Receipts update the verdict of the pushed bundle they answer.

Never twice: an outbox name already in the state is not downloaded again, and a download
whose SHA-256 was seen before (the same bytes under a new name) is not processed again.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_client.config import ClientConfig
from exchange_client.credentials import Credentials
from exchange_client.receipts import receipt_summary
from exchange_client.state import PulledItem, State, locked_state, read_state
from exchange_client.tables import convert_csv
from exchange_client.transport import Session, run_with_node
from exchange_common.errors import InputError, PeerError
from exchange_common.fs import atomic_write, sha256_file
from exchange_common.timefmt import rfc3339
from pki.bundle import BundleError, open_bundle, verify

__all__ = ["PullOutcome", "convert_opened", "process_download", "pull", "safe_outbox_name"]


@dataclass(frozen=True)
class PullOutcome:
    """What became of one outbox file in this pull."""

    name: str
    status: str  # opened | rejected | duplicate | ignored (import: this department's own bundle)
    kind: str | None = None
    bundle_id: str | None = None
    reason_code: str | None = None
    receipt_for: str | None = None
    verdict: str | None = None
    opened_to: str | None = None
    #: One line on what a relay asks, a result segment says (resources and their states) or a
    #: receipt says beyond its verdict (explanation, rows rejected by reason, routing).
    summary: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


def safe_outbox_name(name: str) -> bool:
    """True when a name the node offers is safe to use as a local file name.

    The node is trusted to sign, not to name files: a hostile or broken node must not make
    the client write outside its folders.
    """
    if not name or len(name.encode()) > 255 or name in (".", ".."):
        return False
    if name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        return False
    return all(unicodedata.category(c)[0] != "C" for c in name)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _reject(
    cfg: ClientConfig, path: Path, name: str, code: str, message: str, now: dt.datetime
) -> None:
    folder = cfg.folder("rejected")
    target = folder / name
    if target.exists():
        target = folder / f"{name}.{uuid.uuid4().hex[:8]}"
    path.replace(target)
    reason = {"name": name, "reason_code": code, "reason": message, "at": rfc3339(now)}
    atomic_write(
        target.with_name(target.name + ".reason.json"),
        json.dumps(reason, ensure_ascii=False, indent=2).encode() + b"\n",
        0o600,
    )


def process_download(
    cfg: ClientConfig,
    creds: Credentials,
    state: State,
    name: str,
    path: Path,
    out_dir: Path,
    now: dt.datetime,
) -> PullOutcome:
    """Verify and open one downloaded file, move it into place, record it in ``state``.

    ``path`` is the download in a private folder; afterwards it is in ``DIR/pulled/`` (opened)
    or ``DIR/rejected/`` (with the reason), or deleted (duplicate bytes).
    """
    digest = sha256_file(path)
    size = path.stat().st_size
    if digest in state.pulled_digests():
        path.unlink()
        return PullOutcome(name, "duplicate")
    item = PulledItem(name=name, sha256=digest, size=size, pulled_at=rfc3339(now), status="opened")
    try:
        vb = verify(path, creds.trust, now=now)
        # Only the node we pinned may speak to us through /outbox: a bundle signed by any
        # other certificate (even a valid department one) is refused, so a compromised
        # department cannot plant "receipts" or "results".
        if vb.sender.fingerprint != cfg.node_fingerprint:
            raise BundleError(
                "bundle rejected: not signed by the pinned node certificate", code="E_NOT_NODE"
            )
        kind = vb.header.kind.value
        bundle_id = str(vb.bundle_id)
        target = out_dir / kind / bundle_id
        opened = open_bundle(
            path,
            target,
            recipient_key=creds.key,
            recipient_cert=creds.cert,
            trust=creds.trust,
            now=now,
        )
    except PeerError as e:
        _reject(cfg, path, name, e.code, e.message, now)
        item.status, item.reason_code = "rejected", e.code
        state.pulled[name] = item
        return PullOutcome(name, "rejected", reason_code=e.code)
    item.kind, item.bundle_id = kind, bundle_id
    item.fields = _recorded_fields(kind, dict(opened.manifest.fields), target)
    outcome = PullOutcome(
        name,
        "opened",
        kind=kind,
        bundle_id=bundle_id,
        opened_to=str(target),
        summary=_summary(kind, item.fields),
    )
    if kind == "receipt":
        fields = opened.manifest.fields
        answered = fields.get("bundle_id")
        verdict = fields.get("verdict")
        code = fields.get("reason_code")
        item.receipt_for = answered if isinstance(answered, str) else None
        item.verdict = verdict if isinstance(verdict, str) else None
        pushed = state.pushed.get(item.receipt_for or "")
        if pushed is not None and item.verdict in ("accepted", "rejected"):
            pushed.receipts.append(name)
            # The node accepts a bundle id once: a second receipt for the same bundle (a retried
            # upload whose first attempt did arrive) says E_REPLAY, and must not undo the first.
            if pushed.verdict != "accepted":
                pushed.verdict = item.verdict
                pushed.reason_code = code if isinstance(code, str) else None
        outcome = PullOutcome(
            name,
            "opened",
            kind=kind,
            bundle_id=bundle_id,
            receipt_for=item.receipt_for,
            verdict=item.verdict,
            reason_code=code if isinstance(code, str) else None,
            opened_to=str(target),
            summary=receipt_summary(item.fields),
        )
    final = cfg.folder("pulled") / name
    if final.exists():
        final = final.with_name(f"{name}.{uuid.uuid4().hex[:8]}")
    path.replace(final)
    state.pulled[name] = item
    return outcome


#: Of a result segment's report, what the client keeps per resource (no personal data).
_STATUS_KEYS = ("resource", "answered_by", "provider", "state", "due_date", "segment")


def _recorded_fields(kind: str, fields: dict[str, Any], opened: Path) -> dict[str, Any]:
    """The manifest fields kept in the state; a result segment adds its per-resource states."""
    if kind == "result":
        try:
            report = json.loads((opened / "report.json").read_text(encoding="utf-8"))
            fields["statuses"] = [
                {k: r.get(k) for k in _STATUS_KEYS} for r in report.get("resources", [])
            ]
            fields["due_date"] = report.get("due_date")
        except (OSError, ValueError, AttributeError):
            pass  # an old node's result without a report: the fields alone
    return fields


def _summary(kind: str, fields: dict[str, Any]) -> str | None:
    """The line `pull` prints for a relay or a result segment."""
    if kind == "relay":
        return (
            f"relay for {fields.get('resource')}: {fields.get('persons')} person(s), "
            f"answer by {fields.get('due_date') or 'no deadline (calendar missing)'} "
            f"(exchange-client respond --to-query {fields.get('relay_id') or 'RELAY_ID'} FILE)"
        )
    if kind == "notice":
        what = {
            "overdue": f"is overdue (was due {fields.get('due_date')})",
            "extended": f"deadline extended to {fields.get('due_date')}",
            "terminated": "was terminated without an answer",
            "deadline": f"deadline set: {fields.get('due_date')}",
        }.get(str(fields.get("notice")), str(fields.get("notice")))
        subject = fields.get("relay_id") or fields.get("query_id")
        reason = f" ({fields['reason']})" if fields.get("reason") else ""
        return f"notice: {fields.get('resource')} of {subject} {what}{reason}"
    if kind == "result" and "statuses" in fields:
        states = ", ".join(f"{s['resource']} {s['state']}" for s in fields["statuses"])
        end = "final" if fields.get("final") else "more to come"
        return f"result segment {fields.get('segment')} ({end}; {fields.get('status')}): {states}"
    return None


def pull(
    cfg: ClientConfig,
    creds: Credentials,
    out_dir: Path,
    *,
    only: Callable[[str], bool] | None = None,
    retries: int | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> tuple[list[PullOutcome], list[str]]:
    """Download every new outbox file (``only`` filters names), verify, open, record.

    Returns the outcomes and the names skipped as unsafe. Network trouble raises
    :class:`~exchange_common.errors.TransportError` with nothing recorded for files not yet processed.
    """
    staging_root = cfg.folder("pulled")
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=staging_root))
    try:
        known = set(read_state(cfg.state_path).pulled)
        skipped: list[str] = []

        async def fetch(session: Session) -> list[str]:
            got: list[str] = []
            for entry in await session.outbox():
                if entry.name in known or (only is not None and not only(entry.name)):
                    continue
                if not safe_outbox_name(entry.name):
                    if entry.name not in skipped:
                        skipped.append(entry.name)
                    continue
                local = staging / entry.name
                local.unlink(missing_ok=True)  # a retried attempt starts the file afresh
                await session.download(entry.name, local)
                got.append(entry.name)
            return got

        names = run_with_node(cfg, fetch, retries=retries, on_retry=on_retry)
        outcomes: list[PullOutcome] = []
        now = _now()
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        failure: InputError | None = None
        with locked_state(cfg.state_path) as state:
            for name in names:
                if name in state.pulled:  # another client process got it meanwhile
                    continue
                try:
                    outcomes.append(
                        process_download(cfg, creds, state, name, staging / name, out_dir, now)
                    )
                except InputError as e:
                    # A local problem (e.g. the output folder already holds the files): keep
                    # what was processed so far, leave this one unrecorded for the next pull.
                    failure = e
                    break
        if failure is not None:
            raise failure
        return outcomes, skipped
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def convert_opened(outcomes: list[PullOutcome], fmt: str) -> list[str]:
    """Convert the CSV members of the opened (non-receipt) bundles to ``fmt``.

    See :func:`exchange_client.tables.convert_csv`. A member that cannot be converted is left
    as it is; the returned messages (bundle id and code, never member names) say which.
    """
    problems: list[str] = []
    for o in outcomes:
        if o.status != "opened" or o.kind == "receipt" or o.opened_to is None:
            continue
        for member in sorted(Path(o.opened_to).iterdir()):
            if member.suffix.lower() != ".csv" or not member.is_file():
                continue
            try:
                convert_csv(member, fmt)
            except InputError as e:
                problems.append(f"bundle {o.bundle_id}: a CSV member was not converted ({e.code})")
    return problems
