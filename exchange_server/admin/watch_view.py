"""What ``exchange-server watch`` draws: a pure function of the status document.

:func:`render_status` turns :func:`~exchange_server.store.status.node_status`'s document
(schema ``exchange-node-status/1``) into one rich renderable: the panels of the live view. It
reads nothing and never raises for a missing field or one of another shape (a panel says so in
place), and fields it does not know are drawn as they are under "More", so a field added to the
schema shows up before anyone writes a panel for it. It draws only what the document holds:
codes, states, counts and dates, never an ID number or a name.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from exchange_common.codes import lookup
from exchange_server.store.models import BundleState

__all__ = ["render_status"]

#: A node certificate with fewer days left is shown in red (as ``status`` exits 1 for it).
_CERT_WARN_DAYS = 30
#: The fields of :data:`~exchange_server.admin.status_cli.SCHEMA` drawn by a panel of their own
#: (None: the whole value); anything else is drawn as it is under "More".
_DRAWN: dict[str, frozenset[str] | None] = {
    "schema": None,
    "node": frozenset({"code", "at"}),
    "uploads": frozenset({"by_state", "by_kind", "by_department"}),
    "oldest_moving": None,
    "held": None,
    "rejections_last_day": None,
    "deadlines": None,
    "crl": frozenset({"current", "code", "next_update", "message"}),
    "certificate": frozenset({"not_after", "days_left"}),
    "attention": None,
    "attention_reasons": None,
    "stuck": None,
    "pipeline": frozenset({"queued", "oldest_queued_seconds", "held", "healthy"}),
    "calendar": frozenset({"years", "covers_this_year", "covers_next_year"}),
    "audit": frozenset({"events", "checkpointed", "newest_checkpoint_at"}),
    "spool": frozenset({"disk", "by_department"}),
    "department_certificates": None,
}


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _show(value: object) -> str:
    return "—" if value is None else str(value)


def _compact(value: object, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _age(seconds: object) -> str:
    """``seconds`` in words: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    s = _int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _states(names: set[str]) -> list[str]:
    """Upload states in the pipeline's order, any state this view does not know last."""
    known = [s.value for s in BundleState if s.value in names]
    return known + sorted(names - set(known))


def _counts(label: str, counts: Mapping[str, Any], order: Sequence[str] | None = None) -> Text:
    keys = list(order) if order is not None else sorted(counts, key=str)
    parts = [f"{k} {_show(counts.get(k))}" for k in keys if k in counts]
    return Text(f"{label}: " + (" · ".join(parts) or "none"))


def _uploads(doc: Mapping[str, Any], rows: int) -> RenderableType:
    up = _map(doc.get("uploads"))
    by_state, by_kind, by_dept = (_map(up.get(k)) for k in ("by_state", "by_kind", "by_department"))
    states = _states(
        {str(s) for s in by_state} | {str(s) for c in by_dept.values() for s in _map(c)}
    )
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("department", no_wrap=True)
    for state in states:
        table.add_column(state, justify="right")
    table.add_column("total", justify="right")
    departments = list(by_dept.items())
    for dept, counts in departments[:rows]:
        c = _map(counts)
        total = sum(_int(v) for v in c.values())
        table.add_row(str(dept), *(_show(c.get(s, "")) for s in states), str(total))
    if len(departments) > rows:
        table.add_row(f"… {len(departments) - rows} more", style="dim")
    return Group(_counts("by state", by_state, states), _counts("by kind", by_kind), table)


def _oldest(doc: Mapping[str, Any]) -> RenderableType:
    if not doc.get("oldest_moving"):
        return Text("nothing on its way")
    o = _map(doc.get("oldest_moving"))
    return Text(
        f"upload {_show(o.get('upload_id'))}\n"
        f"{_show(o.get('department'))} · {_show(o.get('kind'))} · {_show(o.get('state'))}\n"
        f"for {_age(o.get('age_seconds'))} (received {_show(o.get('received_at'))})"
    )


def _held(doc: Mapping[str, Any], rows: int) -> RenderableType:
    held = [_map(h) for h in doc.get("held") or ()]
    if not held:
        return Text("none")
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("upload", no_wrap=True, min_width=36)  # a whole id, for `upload retry`
    for name in ("department", "kind", "state"):
        table.add_column(name)
    table.add_column("attempts", justify="right")
    for h in held[:rows]:
        table.add_row(
            *(_show(h.get(k)) for k in ("upload_id", "department", "kind", "state", "attempts"))
        )
    if len(held) > rows:
        table.add_row(f"… {len(held) - rows} more", style="dim")
    hint = Text("fix the cause (the log names it), then: exchange-server upload retry", "dim")
    return Group(table, hint)


def _rejections(doc: Mapping[str, Any], rows: int) -> RenderableType:
    counts = _map(doc.get("rejections_last_day"))
    if not counts:
        return Text("none")
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("reason", no_wrap=True)
    table.add_column("count", justify="right")
    table.add_column("meaning", style="dim", no_wrap=True, overflow="ellipsis", ratio=1)
    items = list(counts.items())
    for code, n in items[:rows]:
        entry = lookup(str(code))
        table.add_row(str(code), _show(n), entry.peer_text if entry is not None else "")
    if len(items) > rows:
        table.add_row(f"… {len(items) - rows} more", style="dim")
    return table


def _deadlines(doc: Mapping[str, Any]) -> RenderableType:
    d = _map(doc.get("deadlines"))
    if not d:
        return Text("—")
    names = {"overdue": "overdue", "due_within_a_day": "due within a day"}
    lines = []
    for key, value in d.items():
        style = "bold red" if key == "overdue" and _int(value) > 0 else ""
        lines.append(Text(f"{names.get(key, key)}: {_show(value)}", style))
    return Group(*lines)


def _trust(doc: Mapping[str, Any]) -> RenderableType:
    crl, cert = _map(doc.get("crl")), _map(doc.get("certificate"))
    if crl.get("current") is True:
        crl_line = Text(f"CRL current until {_show(crl.get('next_update'))}")
    elif not crl:
        crl_line = Text("CRL: —")
    else:
        crl_line = Text(
            f"CRL NOT CURRENT ({_show(crl.get('code'))}): {_show(crl.get('message'))}", "bold red"
        )
    days = cert.get("days_left")
    style = "bold red" if isinstance(days, int) and days < _CERT_WARN_DAYS else ""
    cert_line = Text(
        f"node certificate until {_show(cert.get('not_after'))} ({_show(days)} days)", style
    )
    raw = doc.get("department_certificates")
    depts: list[Any] = raw if isinstance(raw, list) else []
    lines = [
        Text(
            f"{_show(_map(c).get('department'))}: {_show(_map(c).get('state'))} "
            f"({_show(_map(c).get('days_left'))} days)",
            "bold red",
        )
        for c in depts[:3]
    ]
    return Group(crl_line, cert_line, *lines)


def _health(doc: Mapping[str, Any]) -> RenderableType:
    """The pipeline, stuck uploads, the working-day calendar and the audit trail, one line each."""
    pipe, cal, audit = _map(doc.get("pipeline")), _map(doc.get("calendar")), _map(doc.get("audit"))
    raw_stuck = doc.get("stuck")
    stuck: list[Any] = raw_stuck if isinstance(raw_stuck, list) else []
    queued = _int(pipe.get("queued"))
    healthy = pipe.get("healthy") is not False
    lines = [
        Text(
            f"pipeline {'ok' if healthy else 'NOT KEEPING UP'}, {queued} queued"
            + (f" (oldest {_age(pipe.get('oldest_queued_seconds'))})" if queued else ""),
            "" if healthy else "bold red",
        ),
        Text(
            f"stuck: {len(stuck)}"
            + "".join(
                f"\n  {_show(_map(x).get('upload_id'))}: {_show(_map(x).get('why'))}"
                for x in stuck[:3]
            ),
            "bold red" if stuck else "",
        ),
    ]
    raw_years = cal.get("years")
    years: list[Any] = raw_years if isinstance(raw_years, list) else []
    lines.append(
        Text(
            "calendar " + (", ".join(str(y) for y in years[-3:]) or "—"),
            "" if cal.get("covers_this_year") is not False else "bold red",
        )
    )
    lines.append(
        Text(
            f"audit {_show(audit.get('events'))} events, {_show(audit.get('checkpointed'))} "
            "under a signed checkpoint"
        )
    )
    lines.append(Text(_quota_line(_map(doc.get("spool")))))
    return Group(*lines)


def _quota_line(spool: Mapping[str, Any]) -> str:
    """The departments nearest their quota, and the disk's free space."""
    shares = []
    for code, use in _map(spool.get("by_department")).items():
        u = _map(use)
        if _int(u.get("quota_bytes")):
            shares.append((100 * _int(u.get("counted_bytes")) // _int(u.get("quota_bytes")), code))
    top = ", ".join(f"{code} {share}%" for share, code in sorted(shares, reverse=True)[:3])
    disk = _map(spool.get("disk"))
    free = _int(disk.get("free_bytes")) // 2**30
    return f"quota {top or '—'}; disk {free} GiB free"


def _extras(doc: Mapping[str, Any]) -> list[tuple[str, object]]:
    """Fields no panel draws: new ones a later schema adds keep a place on the screen."""
    extra: list[tuple[str, object]] = []
    for key, value in doc.items():
        if key not in _DRAWN:
            extra.append((str(key), value))
        elif (sub := _DRAWN[key]) is not None and isinstance(value, Mapping):
            extra.extend((f"{key}.{k}", v) for k, v in value.items() if k not in sub)
    return extra


def _pair(
    left: RenderableType, right: RenderableType, wide: bool, ratios: tuple[int, int]
) -> RenderableType:
    if not wide:
        return Group(left, right)
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=ratios[0])
    grid.add_column(ratio=ratios[1])
    grid.add_row(left, right)
    return grid


def render_status(
    doc: Mapping[str, Any],
    *,
    refreshed: dt.datetime | None,
    interval: float,
    notes: Sequence[str] = (),
    rows: int = 10,
    wide: bool = True,
) -> RenderableType:
    """The whole screen for a status document (schema ``exchange-node-status/1``): header,
    queues by state and department, the oldest upload on its way, deadlines, CRL and node
    certificate, held uploads, rejections of the last day, fields it does not know under
    "More", and a footer with the time of ``refreshed`` (None: not yet), ``notes`` and how to
    quit. Tables show at most ``rows`` rows each; panels side by side when ``wide``, else one
    above the other.

    Never raises for a missing field or one of another shape: a value it cannot read is drawn as
    "—" or "none". Draws only what ``doc`` holds.
    """
    node = _map(doc.get("node"))
    header = Text.assemble(
        ("exchange-server watch", "bold"),
        f"  node {_show(node.get('code'))}",
        (f"  status at {_show(node.get('at'))}", "dim"),
    )
    reasons = doc.get("attention_reasons")
    verdict = (
        Text("NEEDS ATTENTION: " + "; ".join(map(str, reasons)), "bold red")
        if isinstance(reasons, list) and reasons
        else Text("nothing needs attention", "green")
        if isinstance(reasons, list)
        else Text("")
    )
    held_n = len(doc.get("held") or ()) if isinstance(doc.get("held"), list) else 0
    overdue = _int(_map(doc.get("deadlines")).get("overdue"))
    right = Group(
        Panel(_oldest(doc), title="Oldest on its way", title_align="left"),
        Panel(
            _deadlines(doc),
            title="Deadlines (relayed resources)",
            title_align="left",
            border_style="red" if overdue else "",
        ),
        Panel(_trust(doc), title="CRL and certificate", title_align="left"),
        Panel(_health(doc), title="Pipeline, calendar, audit", title_align="left"),
    )
    uploads = Panel(_uploads(doc, rows), title="Uploads", title_align="left")
    held = Panel(
        _held(doc, rows),
        title=f"Held after repeated failures ({held_n})",
        title_align="left",
        border_style="red" if held_n else "",
    )
    rejections = Panel(_rejections(doc, rows), title="Rejections, last day", title_align="left")
    top = _pair(uploads, right, wide, (3, 2))
    bottom = _pair(held, rejections, wide, (3, 2))
    parts: list[RenderableType] = [header, verdict, top, bottom]
    if extra := _extras(doc):
        more = Group(*(Text(f"{k}: {_compact(v)}") for k, v in extra[:rows]))
        parts.append(Panel(more, title="More", title_align="left"))
    when = refreshed.astimezone().strftime("%H:%M:%S") if refreshed is not None else "not yet"
    footer = [Text(note, "yellow", no_wrap=True, overflow="ellipsis") for note in notes]
    footer.append(
        Text.assemble(
            f"refreshed {when}",
            (f" · on spool events, else every {interval:g} s", "dim"),
            " · ",
            ("q", "bold"),
            " or ",
            ("Ctrl-C", "bold"),
            " to quit",
            no_wrap=True,
            overflow="ellipsis",
        )
    )
    # the footer keeps its lines on a short screen: the body is cut, never how to quit
    screen = Layout()
    screen.split_column(Layout(Group(*parts)), Layout(Group(*footer), size=len(footer)))
    return screen
