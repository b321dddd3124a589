"""Routing of accepted bundles: the one interface the comparison engine and workflows plug into.

The ingest pipeline hands every accepted bundle to a :class:`Router` twice: :meth:`Router.review`
before the receipt (a :class:`Refusal` turns into a signed rejection receipt with its reason
code; the returned details go into the "accepted" receipt), and :meth:`Router.route` after it,
whose outcome becomes the upload's final state.
The node's router is :class:`exchange_server.pipeline.workflow.Workflow`: there is no default
that would accept data without a catalog review (fail closed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from exchange_common.errors import ExchangeError
from exchange_server.store.models import BundleState
from pki.bundle import VerifiedBundle

__all__ = ["AcceptedBundle", "Refusal", "RouteOutcome", "Router"]


class Refusal(ExchangeError):
    """A bundle refused by review: ``code`` goes into the signed rejection receipt."""

    def __init__(self, code: str, message: str, *, detail: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail)


@dataclass(frozen=True)
class AcceptedBundle:
    """A bundle that passed every ingest check, as the router sees it."""

    upload_id: str
    bundle_id: str
    kind: str
    sender: str
    path: Path
    #: When the upload reached the node (deadlines count from it); None in some tests.
    received_at: dt.datetime | None = None
    #: The verification the runner did in this batch, if it did one: opening the bundle then
    #: checks the file still is what was verified instead of verifying it again.
    verified: VerifiedBundle | None = None


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
    pipeline may review and route the same bundle again."""

    def review(self, bundle: AcceptedBundle) -> dict[str, Any]:
        """Check ``bundle`` before its receipt: facts for the receipt (no personal data), or
        :class:`Refusal`; any other exception is a node-side failure (the bundle stays
        accepted and is retried)."""
        ...

    def route(self, bundle: AcceptedBundle) -> RouteOutcome:
        """Route ``bundle``; raise only for node-side failures (the bundle stays accepted)."""
        ...

    def settle(self) -> None:
        """Called after a batch's final states are recorded: repair what routing in parallel
        batches could leave behind (a query closed by another batch's answer while this one
        recorded it waiting). Idempotent."""
        ...
