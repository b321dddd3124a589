"""What ``exchange-server watch`` draws, without a terminal: the panels of a real node's status
(nothing personal), documents missing fields or carrying new ones, lists cut to the screen."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from rich.console import Console

from exchange_server.admin.status_cli import node_status
from exchange_server.admin.watch_view import render_status
from tests.server.pipeline.test_relays import RELAYED_ONLY, _query
from tests.server.pipeline.test_workflow import MZ, RS, A, B, C, _push_data
from tests.server.world import World

AT = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def world(catalog_world: World) -> World:
    return catalog_world


def screen(doc: Any, **kw: Any) -> str:
    console = Console(record=True, width=160, height=60, color_system=None, file=io.StringIO())
    console.print(render_status(doc, refreshed=AT, interval=5, **kw))
    return console.export_text()


def test_the_panels_show_what_status_says_and_nothing_personal(world: World) -> None:
    _push_data(world)
    _push_data(world, sender=MZ)  # someone else's resource: E_PROVIDER
    query = _query(world, RELAYED_ONLY)  # routed: waits for the provider
    text = screen(node_status(world.node, dt.datetime.now(dt.UTC)))
    assert "node NODE01" in text
    assert "by state: rejected 1 · routed 1 · done 1" in text
    assert "by kind: data 2 · query 1" in text and RS in text and MZ in text
    assert f"upload {query.id}" in text  # the oldest on its way
    assert "E_PROVIDER" in text and "Only the providing department" in text
    assert "overdue: 0" in text and "due within a day: " in text
    assert "Held after repeated failures (0)" in text
    assert "CRL current until" in text and "node certificate until" in text
    assert "q or Ctrl-C to quit" in text and "every 5 s" in text
    assert "More" not in text  # every field of the schema has its panel
    assert not any(x in text for x in (A, B, B.lower(), C, "张三", "欧阳娜娜", "李四"))


def test_held_uploads_and_what_needs_attention_are_shown() -> None:
    held = {"upload_id": "6f1c2d3e-0000-4000-8000-000000000001", "department": MZ}
    doc = {
        "held": [held | {"kind": "query", "state": "accepted", "attempts": 5}],
        "deadlines": {"overdue": 2, "due_within_a_day": 1},
        "crl": {"current": False, "code": "E_CRL_STALE", "message": "CRL expired"},
        "certificate": {"not_after": "2026-12-01T00:00:00+00:00", "days_left": 9},
    }
    text = screen(doc)
    assert "Held after repeated failures (1)" in text and held["upload_id"] in text
    assert "upload retry" in text and "overdue: 2" in text and "due within a day: 1" in text
    assert "CRL NOT CURRENT (E_CRL_STALE): CRL expired" in text and "(9 days)" in text


def test_an_empty_or_reshaped_document_is_drawn_without_failing() -> None:
    assert "q or Ctrl-C to quit" in screen({})
    odd = {
        "node": "NODE01",
        "uploads": {"by_state": ["done"], "by_department": {"RS330100": 3}},
        "held": {"oops": 1},
        "deadlines": 7,
        "crl": {"current": False},
        "certificate": None,
        "oldest_moving": {"age_seconds": "long"},
    }
    text = screen(odd, notes=["the store cannot be read (OperationalError)"], wide=False)
    assert "by state: none" in text and "RS330100" in text  # what can be read is drawn
    assert "CRL NOT CURRENT" in text and "the store cannot be read" in text


def test_fields_a_later_schema_adds_are_shown_as_they_are() -> None:
    doc = {
        "schema": "exchange-node-status/1",
        "queues": {"relay": 4},
        "uploads": {"by_state": {"done": 2}, "bytes_today": 1024},
        "crl": {"current": True, "next_update": "2026-11-29T00:00:00+00:00", "issuer": "测试部"},
    }
    text = screen(doc)
    assert "More" in text and 'queues: {"relay": 4}' in text
    assert "uploads.bytes_today: 1024" in text and 'crl.issuer: "测试部"' in text
    assert "by state: done 2" in text


def test_long_lists_are_cut_to_the_rows_the_screen_has() -> None:
    held = [{"upload_id": f"u{i}", "attempts": 5} for i in range(30)]
    text = screen({"held": held}, rows=4)
    assert "u3" in text and "u4 " not in text and "… 26 more" in text
