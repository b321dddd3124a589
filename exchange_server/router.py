"""Routing of accepted bundles: the one interface the comparison engine and workflows plug into.

The ingest pipeline hands every accepted bundle to a :class:`Router` and records the outcome.
Until the comparison engine and the query workflow exist, :class:`StoreRouter` keeps accepted
data bundles (they are already in ``spool/store``) and leaves queries waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from exchange_server.store.models import BundleState

__all__ = ["AcceptedBundle", "RouteOutcome", "Router", "StoreRouter"]


@dataclass(frozen=True)
class AcceptedBundle:
    """A bundle that passed every ingest check, as the router sees it."""

    upload_id: str
    bundle_id: str
    kind: str
    sender: str
    path: Path


class RouteOutcome(StrEnum):
    """What routing did; maps onto the upload's next state."""

    #: Nothing more to do for this bundle (e.g. a dataset was stored).
    DONE = "done"
    #: Handed on; waits for something else (a provider's answer, the engine).
    WAITING = "waiting"

    @property
    def state(self) -> BundleState:
        """The upload state this outcome leads to."""
        return BundleState.DONE if self is RouteOutcome.DONE else BundleState.ROUTED


class Router(Protocol):
    """Decides what happens to an accepted bundle. Must be idempotent: after a crash the
    pipeline may route the same bundle again."""

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Route ``bundle``; raise only for node-side failures (the bundle stays accepted)."""
        ...


class StoreRouter:
    """Default router until the engine exists: data is kept, queries wait."""

    waiting_kinds = frozenset({"query", "recheck", "revocation", "relay", "response"})

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Data and other kinds are done once stored; query-like kinds wait for the workflow."""
        return RouteOutcome.WAITING if bundle.kind in self.waiting_kinds else RouteOutcome.DONE
