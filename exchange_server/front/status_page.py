"""The read-only status page for people (``/`` of the monitor, docs/operator-guide.md).

One HTML document rendered on the server from the status document
(:func:`exchange_server.store.status.node_status`): no script, one inline style allowed by its
hash in the Content-Security-Policy, every value escaped, a refresh every
:data:`REFRESH_SECONDS`. It shows codes, states, counts and dates only, like ``status``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

__all__ = ["CSP", "REFRESH_SECONDS", "render_page"]

REFRESH_SECONDS = 15

_STYLE = """
body{font:15px/1.45 system-ui,"Noto Sans CJK SC",sans-serif;margin:1.5rem;color:#1d2733}
h1{font-size:1.35rem;margin:0 0 .3rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
.ok,.attention{padding:.5rem .8rem;border-radius:6px;display:inline-block;font-weight:600}
.ok{background:#e3f4e8;color:#17602f}.attention{background:#fde8e6;color:#9b1c12}
table{border-collapse:collapse;margin:.2rem 0}td,th{border:1px solid #d3d9e0;padding:.25rem .6rem;
text-align:left}th{background:#f2f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(22rem,1fr));gap:0 2rem}
.muted{color:#66727f}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

#: The page's Content-Security-Policy: nothing but its own inline style.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> str:
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    cols = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{cols}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, html: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{html}</section>"


def _when(iso: str | None) -> str:
    """An ISO time as people read it: ``2026-12-10 08:18 UTC``."""
    return iso[:16].replace("T", " ") + " UTC" if iso else "-"


def render_page(doc: dict[str, Any], reasons: Sequence[str]) -> str:
    """The page for status document ``doc``; ``reasons`` are what needs people (none: ok)."""
    node = doc["node"]
    up = doc["uploads"]
    states = sorted({s for c in up["by_department"].values() for s in c})
    by_dept = _table(
        ["department", *states],
        ([d, *(int(c.get(s, 0)) for s in states)] for d, c in up["by_department"].items()),
        "no uploads yet",
    )
    oldest = doc.get("oldest_moving")
    crl, cert, pipe = doc["crl"], doc["certificate"], doc["pipeline"]
    cal, audit, dl = doc["calendar"], doc["audit"], doc["deadlines"]
    banner = (
        '<p class="attention">needs attention: ' + escape("; ".join(reasons)) + "</p>"
        if reasons
        else '<p class="ok">nothing needs attention</p>'
    )
    health = _table(
        ["what", "state"],
        [
            [
                "pipeline",
                ("ok" if pipe["healthy"] else "NOT KEEPING UP")
                + f", {pipe['queued']} queued"
                + (f" (oldest {pipe['oldest_queued_seconds']} s)" if pipe["queued"] else ""),
            ],
            [
                "CRL",
                f"current until {_when(crl['next_update'])}"
                if crl["current"]
                else f"NOT CURRENT ({crl['code']})",
            ],
            [
                "node certificate",
                f"valid until {_when(cert['not_after'])} ({cert['days_left']} days)",
            ],
            *(
                [
                    f"certificate of {c['department']}",
                    f"{c['state']}, ends {_when(c['not_after'])}",
                ]
                for c in doc.get("department_certificates", [])
            ),
            [
                "working-day calendar",
                ", ".join(str(y) for y in cal["years"][-3:])
                + ("" if cal["covers_this_year"] else " (this year missing)"),
            ],
            [
                "audit trail",
                f"{audit['events']} events, {audit['checkpointed']} under a signed checkpoint",
            ],
            ["deadlines", f"{dl['overdue']} overdue, {dl['due_within_a_day']} due within a day"],
        ],
        "",
    )
    parts = [
        _section("Health", health),
        _section(
            "Uploads by state",
            _table(["state", "uploads"], sorted(up["by_state"].items()), "no uploads yet"),
        ),
        _section("Uploads by department", by_dept),
        _section(
            "Quota use by department",
            _table(
                ["department", "counted (bytes)", "quota (bytes)", "outbox files"],
                (
                    [d, int(u["counted_bytes"]), int(u["quota_bytes"]), int(u["outbox_files"])]
                    for d, u in doc.get("spool", {}).get("by_department", {}).items()
                ),
                "no department registered",
            ),
        ),
        _section(
            "Rejections in the last day",
            _table(["reason", "uploads"], doc["rejections_last_day"].items(), "no rejection today"),
        ),
        _section(
            "Held after repeated failures",
            _table(
                ["upload", "department", "kind", "state", "attempts"],
                (
                    [h["upload_id"], h["department"], h["kind"], h["state"], h["attempts"]]
                    for h in doc["held"]
                ),
                "none",
            ),
        ),
        _section(
            "Stuck",
            _table(
                ["upload", "department", "kind", "since", "why"],
                (
                    [x["upload_id"], x["department"], x["kind"], _when(x["since"]), x["why"]]
                    for x in doc["stuck"]
                ),
                "none",
            ),
        ),
        _section(
            "Oldest still moving",
            _table(
                ["upload", "department", "kind", "state", "waiting (s)"],
                [
                    [
                        oldest["upload_id"],
                        oldest["department"],
                        oldest["kind"],
                        oldest["state"],
                        oldest["age_seconds"],
                    ]
                ]
                if oldest
                else [],
                "nothing is moving",
            ),
        ),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Node {escape(node['code'])}: status</title><style>{_STYLE}</style></head><body>"
        f"<h1>Exchange node {escape(node['code'])} (数据交换节点)</h1>"
        f'<p class="muted">status at {escape(_when(node["at"]))}; refreshes every '
        f"{REFRESH_SECONDS} s; read-only</p>{banner}"
        f'<div class="grid">{"".join(parts)}</div></body></html>'
    )
