"""The pipeline's transition table, tested as a table: every transition and every refusal.

:func:`decide` is pure, so each case is one call with hand-made facts: no store, no spool,
no clock. The runner tests (test_ingest.py, test_workflow.py) show the same rules applied.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest

from exchange_common.net import in_networks
from exchange_server.pipeline.decisions import (
    TRANSITIONS,
    BundleFacts,
    BundleInvalid,
    BundleVerified,
    Event,
    InvalidTransition,
    Quarantine,
    QueryClosed,
    RecordSeen,
    RegistrySnapshot,
    ReviewPassed,
    ReviewRefused,
    Routed,
    SenderRecord,
    SendReceipt,
    StoreBundle,
    UploadFacts,
    Verdict,
    decide,
)
from exchange_server.store.models import BundleState

NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC)
MZ, RS = "MZ330100", "RS330100"
UPLOAD = UploadFacts(
    id="u-1",
    state=BundleState.RECEIVED,
    dept_code=MZ,
    source="sftp",
    remote_addr="10.33.1.7",
)
BUNDLE = BundleFacts(
    bundle_id="b-1", kind="query", signer=MZ, sha256="ab" * 32, addressed_to_node=True
)
REGISTRY = RegistrySnapshot(
    departments={
        MZ: SenderRecord(MZ, True, ("10.33.1.0/24",)),
        RS: SenderRecord(RS, True, ("10.34.0.0/16",)),
    }
)
ACCEPTED = replace(UPLOAD, state=BundleState.ACCEPTED, bundle_id="b-1", kind="query")


def _registry(**changes: object) -> RegistrySnapshot:
    return replace(REGISTRY, **changes)  # type: ignore[arg-type]


# (name, upload, event, registry, expected state, expected code, expected receipt verdict)
CASES: list[
    tuple[str, UploadFacts, Event, RegistrySnapshot, BundleState, str | None, Verdict | None]
] = [
    (
        "bad signature",
        UPLOAD,
        BundleInvalid("E_SIGNATURE", "signature invalid", "cms: bad"),
        REGISTRY,
        BundleState.REJECTED,
        "E_SIGNATURE",
        Verdict.REJECTED,
    ),
    (
        "verified and admitted",
        UPLOAD,
        BundleVerified(BUNDLE),
        REGISTRY,
        BundleState.ACCEPTED,
        None,
        None,
    ),
    (
        "signed by another department than the login",
        UPLOAD,
        BundleVerified(replace(BUNDLE, signer=RS)),
        REGISTRY,
        BundleState.REJECTED,
        "E_SIGNER",
        Verdict.REJECTED,
    ),
    (
        "sender not registered",
        UPLOAD,
        BundleVerified(BUNDLE),
        _registry(departments={RS: REGISTRY.departments[RS]}),
        BundleState.REJECTED,
        "E_SENDER",
        Verdict.REJECTED,
    ),
    (
        "sender disabled",
        UPLOAD,
        BundleVerified(BUNDLE),
        _registry(departments={MZ: SenderRecord(MZ, False, ("10.33.1.0/24",))}),
        BundleState.REJECTED,
        "E_SENDER",
        Verdict.REJECTED,
    ),
    (
        "upload from an unregistered address",
        replace(UPLOAD, remote_addr="10.99.0.1"),
        BundleVerified(BUNDLE),
        REGISTRY,
        BundleState.REJECTED,
        "E_ADDRESS",
        Verdict.REJECTED,
    ),
    (
        "malformed remote address",
        replace(UPLOAD, remote_addr="not-an-address"),
        BundleVerified(BUNDLE),
        REGISTRY,
        BundleState.REJECTED,
        "E_ADDRESS",
        Verdict.REJECTED,
    ),
    (
        "not addressed to this node",
        UPLOAD,
        BundleVerified(replace(BUNDLE, addressed_to_node=False)),
        REGISTRY,
        BundleState.REJECTED,
        "E_RECIPIENT",
        Verdict.REJECTED,
    ),
    (
        "replay of a bundle first seen in another upload",
        UPLOAD,
        BundleVerified(BUNDLE),
        _registry(seen={"b-1": "u-0"}),
        BundleState.REJECTED,
        "E_REPLAY",
        Verdict.REJECTED,
    ),
    (
        "same upload resumed after a crash is no replay",
        UPLOAD,
        BundleVerified(BUNDLE),
        _registry(seen={"b-1": "u-1"}),
        BundleState.ACCEPTED,
        None,
        None,
    ),
    (
        "drop folder: the signer is the sender, no address check",
        replace(UPLOAD, dept_code="", source="drop", remote_addr=None),
        BundleVerified(replace(BUNDLE, signer=RS)),
        REGISTRY,
        BundleState.ACCEPTED,
        None,
        None,
    ),
    (
        "review passed: accepted receipt",
        ACCEPTED,
        ReviewPassed({"query": {"persons": 3}}),
        REGISTRY,
        BundleState.ACCEPTED,
        None,
        Verdict.ACCEPTED,
    ),
    (
        "review refused",
        ACCEPTED,
        ReviewRefused("E_COUNT", "the application states 3 persons, the table holds 2"),
        REGISTRY,
        BundleState.REJECTED,
        "E_COUNT",
        Verdict.REJECTED,
    ),
    ("routed, done", ACCEPTED, Routed(waiting=False), REGISTRY, BundleState.DONE, None, None),
    ("routed, waiting", ACCEPTED, Routed(waiting=True), REGISTRY, BundleState.ROUTED, None, None),
    (
        "query closed",
        replace(ACCEPTED, state=BundleState.ROUTED),
        QueryClosed(),
        REGISTRY,
        BundleState.DONE,
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("upload", "event", "registry", "state", "code", "verdict"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_transition_table(
    upload: UploadFacts,
    event: Event,
    registry: RegistrySnapshot,
    state: BundleState,
    code: str | None,
    verdict: Verdict | None,
) -> None:
    t = decide(upload, event, registry, NOW)
    assert t.state is state
    assert t.code == code
    receipt = t.receipt
    assert (receipt.verdict if receipt else None) == verdict
    if state is BundleState.REJECTED:
        # a refusal always quarantines, tells the sender (the code, never the detail) and
        # leaves an audit event naming the code
        assert any(isinstance(a, Quarantine) for a in t.actions)
        assert receipt is not None and receipt.code == code
        assert receipt.dept_code == t.dept_code
        assert [a.action for a in t.audit] == ["bundle.rejected"]
        assert t.audit[0].detail["code"] == code
        assert t.detail  # the precise cause is kept for the operator
    else:
        assert not any(isinstance(a, Quarantine) for a in t.actions)


def test_admission_records_first_sight_and_stores_the_bundle() -> None:
    t = decide(UPLOAD, BundleVerified(BUNDLE), REGISTRY, NOW)
    assert t.actions == (RecordSeen("b-1"), StoreBundle("b-1"))
    assert t.bundle == BUNDLE and t.dept_code == MZ
    assert [(a.actor, a.action, a.subject) for a in t.audit] == [(MZ, "bundle.accepted", "b-1")]
    # resumed after a crash: already recorded, so not recorded twice
    again = decide(UPLOAD, BundleVerified(BUNDLE), _registry(seen={"b-1": "u-1"}), NOW)
    assert again.actions == (StoreBundle("b-1"),)


def test_drop_folder_bundle_is_answered_to_its_signer() -> None:
    drop = replace(UPLOAD, dept_code="", source="drop", remote_addr=None)
    t = decide(
        drop, BundleVerified(replace(BUNDLE, signer=RS, addressed_to_node=False)), REGISTRY, NOW
    )
    assert t.code == "E_RECIPIENT"
    assert t.receipt is not None and t.receipt.dept_code == RS


def test_review_details_go_into_the_accepted_receipt() -> None:
    t = decide(ACCEPTED, ReviewPassed({"dataset": {"stored": 9}}), REGISTRY, NOW)
    assert t.receipt == SendReceipt(MZ, Verdict.ACCEPTED, details={"dataset": {"stored": 9}})


def test_routing_is_audited_with_its_outcome() -> None:
    done = decide(ACCEPTED, Routed(False), REGISTRY, NOW)
    waiting = decide(ACCEPTED, Routed(True), REGISTRY, NOW)
    assert [a.action for a in done.audit] == ["bundle.done"]
    assert [a.action for a in waiting.audit] == ["bundle.waiting"]


EVENTS: list[Event] = [
    BundleInvalid("E_FORMAT", "x"),
    BundleVerified(BUNDLE),
    ReviewPassed(),
    ReviewRefused("E_SCHEMA", "x"),
    Routed(False),
    QueryClosed(),
]


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s, e in itertools.product(BundleState, EVENTS) if (s, type(e)) not in TRANSITIONS],
    ids=lambda v: v.value if isinstance(v, BundleState) else type(v).__name__,
)
def test_every_other_pair_is_a_node_fault(state: BundleState, event: Event) -> None:
    with pytest.raises(InvalidTransition):
        decide(replace(ACCEPTED, state=state), event, REGISTRY, NOW)


def test_every_state_is_reachable_and_final_states_take_no_event() -> None:
    reached = {BundleState.RECEIVED}  # where every upload starts
    for case in CASES:
        reached.add(case[4])
    assert reached == set(BundleState)
    sources = {state for state, _ in TRANSITIONS}
    # a routed query waits for its final segment; rejected and done take no event
    assert sources == {BundleState.RECEIVED, BundleState.ACCEPTED, BundleState.ROUTED}


def test_decisions_are_deterministic() -> None:
    for _, upload, event, registry, *_ in CASES:
        assert decide(upload, event, registry, NOW) == decide(upload, event, registry, NOW)


@pytest.mark.parametrize(
    ("address", "networks", "inside"),
    [
        ("10.33.1.7", ("10.33.1.0/24",), True),
        ("10.33.2.7", ("10.33.1.0/24",), False),
        ("10.33.2.7", ("10.33.1.0/24", "10.33.2.0/24"), True),
        ("2001:db8::1", ("2001:db8::/32",), True),
        # an IPv4 peer seen through a dual-stack socket: the gate admits it, so must the pipeline
        ("::ffff:10.33.1.7", ("10.33.1.0/24",), True),
        ("10.33.1.7", (), False),
        ("", ("0.0.0.0/0",), False),
        ("10.33.1.7; rm -rf /", ("0.0.0.0/0",), False),
    ],
)
def test_address_in_registered_networks(
    address: str, networks: tuple[str, ...], inside: bool
) -> None:
    assert in_networks(address, networks) is inside
