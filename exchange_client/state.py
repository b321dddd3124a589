"""The client's local memory: which bundles it pushed and which outbox files it pulled.

``DIR/state.json`` is small JSON, rewritten atomically (temporary file, fsync, rename) after
every change, under an exclusive ``flock`` on ``DIR/.state.lock`` so two client processes in
one directory never lose each other's updates. It holds no personal data: bundle ids, kinds,
times, sizes, SHA-256 digests and the node's verdicts, never member file names.

A pulled outbox file is remembered by name *and* SHA-256: the same name is never downloaded
twice, and the same bytes under another name are recognised and not processed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exchange_common.errors import StoreError
from exchange_common.fs import atomic_write

__all__ = [
    "EXPORTED",
    "SEALED",
    "UPLOADED",
    "WAITING",
    "PulledItem",
    "PushedBundle",
    "State",
    "locked_state",
    "read_state",
]

_VERSION = 1
WAITING = "waiting"

#: Where a pushed bundle stands without a receipt (:meth:`PushedBundle.stage`): sealed but
#: never reached the node, uploaded, or written to removable media.
SEALED, UPLOADED, EXPORTED = "sealed", "uploaded", "exported"


@dataclass
class PushedBundle:
    """A bundle this client sealed (and possibly uploaded)."""

    bundle_id: str
    kind: str
    created_at: str
    members: int
    size: int
    sha256: str
    uploaded_at: str | None = None
    #: Set when the bundle was written to removable media instead (办法 第十七条).
    exported_to: str | None = None
    #: ``waiting`` until a receipt arrives, then ``accepted`` or ``rejected``.
    verdict: str = WAITING
    reason_code: str | None = None
    receipts: list[str] = field(default_factory=list)
    #: For an answer or a supplement: the relay or query it refers to.
    in_reply_to: str | None = None

    def stage(self) -> str:
        """Where the bundle stands: the verdict (``accepted``, ``rejected``) once a receipt
        answered it, else :data:`UPLOADED` (awaiting the receipt), :data:`EXPORTED` (on
        removable media) or :data:`SEALED` (it never reached the node: ``resend`` it)."""
        if self.verdict != WAITING:
            return self.verdict
        if self.uploaded_at:
            return UPLOADED
        return EXPORTED if self.exported_to else SEALED


@dataclass
class PulledItem:
    """An outbox file this client downloaded (whatever became of it)."""

    name: str
    sha256: str
    size: int
    pulled_at: str
    #: ``opened`` (verified and opened) or ``rejected`` (kept in DIR/rejected/).
    status: str
    kind: str | None = None
    bundle_id: str | None = None
    reason_code: str | None = None
    #: For a receipt: the pushed bundle it answers and its verdict.
    receipt_for: str | None = None
    verdict: str | None = None
    #: The bundle's manifest fields (the node puts no personal data there), and for a result
    #: segment the state of every resource of its query (``statuses``).
    fields: dict[str, Any] | None = None


@dataclass
class State:
    """Everything in ``state.json``."""

    pushed: dict[str, PushedBundle] = field(default_factory=dict)
    pulled: dict[str, PulledItem] = field(default_factory=dict)

    def pulled_digests(self) -> set[str]:
        """SHA-256 of every file pulled so far."""
        return {p.sha256 for p in self.pulled.values()}

    def to_json(self) -> dict[str, Any]:
        """The state as a JSON object."""
        return {
            "version": _VERSION,
            "pushed": {k: asdict(v) for k, v in self.pushed.items()},
            "pulled": {k: asdict(v) for k, v in self.pulled.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> State:
        """Parse the JSON object; raises :class:`StoreError` when it is not a state file."""
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise StoreError("the client state file has an unknown format", code="E_STATE")
        try:
            pushed = {k: PushedBundle(**v) for k, v in data.get("pushed", {}).items()}
            pulled = {k: PulledItem(**v) for k, v in data.get("pulled", {}).items()}
        except (TypeError, AttributeError) as e:
            raise StoreError("the client state file is damaged", code="E_STATE") from e
        return cls(pushed, pulled)


def read_state(path: Path) -> State:
    """Load the state at ``path`` (an empty state when the file does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return State()
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}", code="E_STATE") from e
    try:
        return State.from_json(json.loads(text))
    except json.JSONDecodeError as e:
        raise StoreError(f"{path} is not valid JSON", code="E_STATE") from e


def write_state(path: Path, state: State) -> None:
    """Replace the state file atomically."""
    data = json.dumps(state.to_json(), ensure_ascii=False, indent=2, sort_keys=True)
    atomic_write(path, data.encode() + b"\n", 0o600)


@contextlib.contextmanager
def locked_state(path: Path) -> Iterator[State]:
    """Read the state under an exclusive lock; write it back when the block ends cleanly.

    An exception inside the block leaves the file as it was (nothing half-applied).
    """
    lock = path.with_name(".state.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = read_state(path)
        yield state
        write_state(path, state)
    finally:
        os.close(fd)
