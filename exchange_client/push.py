"""Seal files for the node, upload them into ``/inbox``, and (optionally) wait for the receipt.

Sealing happens before any connection: the bundle lands in ``DIR/sent/<BUNDLE_ID>.bundle``
and is recorded in the state as soon as it exists, so an upload that fails or is interrupted
can be repeated with the very same bundle (:func:`kept_bundle`, ``exchange-client resend``). Own certificate and node certificate are checked first: an expired or revoked
certificate stops the push before anything is written or uploaded.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange_client.config import ClientConfig
from exchange_client.credentials import (
    Credentials,
    check_node_certificate,
    check_own_certificate,
)
from exchange_client.pull import PullOutcome, pull
from exchange_client.state import WAITING, PushedBundle, locked_state, read_state
from exchange_client.tables import TABULAR_SUFFIXES, ValidationReport, validate_table
from exchange_client.transport import Session, TransferProgress, run_with_node
from exchange_common.catalog import Resource, load_catalog
from exchange_common.errors import InputError, TransportError
from exchange_common.fs import sha256_file
from exchange_common.idnumber import china_today
from exchange_common.tables.source import text_parquet
from exchange_common.timefmt import rfc3339
from pki.bundle import BundleKind, Member, seal_to_file

__all__ = [
    "CATALOG_NAME",
    "PUSH_KINDS",
    "VALIDATED_KINDS",
    "RowsRejected",
    "SealedBundle",
    "kept_bundle",
    "parse_fields",
    "prepare_inputs",
    "push_resource",
    "seal_files",
    "upload_bundle",
    "wait_for_receipt",
]

#: What a department may push (receipts, results and relays come only from the node).
PUSH_KINDS = (
    BundleKind.DATA,
    BundleKind.QUERY,
    BundleKind.RESPONSE,
    BundleKind.REVOCATION,
    BundleKind.RECHECK,
    BundleKind.SUPPLEMENT,
    BundleKind.PROBE,
)


#: Kinds whose tabular inputs (.csv .xlsx .parquet) are validated before sealing.
VALIDATED_KINDS = (
    BundleKind.QUERY,
    BundleKind.DATA,
    BundleKind.RESPONSE,
    BundleKind.SUPPLEMENT,
)


class RowsRejected(InputError):
    """Some rows of a table are invalid and ``--valid-only`` was not given: nothing is sealed.

    ``reports`` pairs the 1-based position of each input file with its validation report.
    """

    def __init__(self, message: str, reports: list[tuple[int, ValidationReport]]) -> None:
        super().__init__(message, code="E_ROWS")
        self.reports = reports


def prepare_inputs(
    files: Sequence[Path],
    kind: BundleKind,
    workdir: Path,
    *,
    encoding: str | None = None,
    valid_only: bool = False,
    today: dt.date | None = None,
    resource: Resource | None = None,
    allow_unauthorized: bool = False,
) -> tuple[list[Path], list[tuple[int, ValidationReport]]]:
    """Check the tabular inputs of a ``query`` or ``data`` push as the node will; return what
    to seal.

    Each table (by suffix) is read, checked (:func:`validate_table`, against ``resource`` for
    a data push) and written as ``workdir/<stem>.csv`` (UTF-8) or, for a ``response``, as
    ``workdir/<stem>.parquet`` (the same cells as text, :func:`text_parquet`: the node merges
    an answer without parsing CSV, decision 0007); other files and other kinds pass through
    unchanged. ``today`` (default: today in China) bounds birth dates.
    ``allow_unauthorized``: a query's persons without an authorization reference are sent (the
    node suspends the query until a supplement brings them, 浙江 六(二)). Raises
    :class:`RowsRejected` (``E_ROWS``) when rows are invalid and ``valid_only`` is false, or
    when a table had rows but none is valid; ``E_SCHEMA``, ``E_COLUMNS``, ``E_ENCODING``,
    ``E_FORMAT`` from :func:`validate_table`.
    """
    today = today or china_today()
    if kind not in VALIDATED_KINDS:
        return list(files), []
    out: list[Path] = []
    reports: list[tuple[int, ValidationReport]] = []
    for position, f in enumerate(files, start=1):
        if f.suffix.lower() not in TABULAR_SUFFIXES:
            out.append(f)
            continue
        target = workdir / f"{f.stem}.csv"
        sealed = target.with_suffix(".parquet") if kind is BundleKind.RESPONSE else target
        if target.exists() or sealed.exists():
            raise InputError("two tables share a name stem: a bundle's member names must be unique")
        try:
            # an answer to a relay holds rows of its resource, checked like a data push
            # and a supplement is a persons list like a query's
            as_kind = "query" if kind in (BundleKind.QUERY, BundleKind.SUPPLEMENT) else "data"
            report = validate_table(
                f,
                as_kind,
                target,
                encoding=encoding,
                today=today,
                resource=resource,
                require_authorization=not (allow_unauthorized and kind is BundleKind.QUERY),
            )
        except InputError as e:
            e.message = f"file {position}: {e.message}"
            raise
        reports.append((position, report))
        if sealed != target:
            text_parquet(target, sealed)
            target.unlink()
        out.append(sealed)
    bad = sum(r.invalid for _, r in reports)
    if bad and not valid_only:
        raise RowsRejected(
            f"{bad} invalid row(s): nothing was sent (fix them, or push with --valid-only)",
            reports,
        )
    empty = [p for p, r in reports if r.rows and not r.valid]
    if empty:
        raise RowsRejected(f"file {empty[0]}: no valid row to send", reports)
    return out, reports


#: Where a department keeps the published resource catalog (数据资源目录) its data pushes are
#: checked against before sealing.
CATALOG_NAME = "catalog.toml"


def push_resource(directory: Path, kind: BundleKind, fields: dict[str, Any]) -> Resource | None:
    """The catalog resource a ``data`` push or a ``response`` is checked against:
    ``fields["resource"]`` in ``DIR/catalog.toml``. None for other kinds, or when the department has no catalog file
    (then only ID-number columns are checked). Raises InputError (``E_CATALOG``, ``E_NOT_FOUND``) for an
    unreadable catalog and ``E_UNKNOWN_RESOURCE`` for a code the catalog does not list (the node would
    refuse the push for it)."""
    path = Path(directory) / CATALOG_NAME
    if kind not in (BundleKind.DATA, BundleKind.RESPONSE) or not path.is_file():
        return None
    catalog = load_catalog(path)
    code = fields.get("resource")
    resource = catalog.resource(code) if isinstance(code, str) else None
    if resource is None:
        raise InputError(
            f"resource {code!r} is not in the catalog {path} (--field resource=CODE)",
            code="E_UNKNOWN_RESOURCE",
        )
    return resource


@dataclass(frozen=True)
class SealedBundle:
    """A bundle sealed for the node and recorded in the state."""

    path: Path
    record: PushedBundle


def _no_float(text: str) -> Any:
    raise InputError(f"fields may not hold decimal numbers ({text}): write them as strings")


def parse_fields(pairs: Sequence[str], json_file: Path | None) -> dict[str, Any]:
    """Manifest fields from ``--fields-json FILE`` then ``--field KEY=VALUE`` (strings win)."""
    fields: dict[str, Any] = {}
    if json_file is not None:
        try:
            data = json.loads(json_file.read_text(encoding="utf-8"), parse_float=_no_float)
        except FileNotFoundError as e:
            raise InputError(f"fields file not found: {json_file}", code="E_NOT_FOUND") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{json_file} is not a JSON file: {e}") from e
        if not isinstance(data, dict):
            raise InputError(f"{json_file} must hold a JSON object")
        fields.update(data)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--field needs KEY=VALUE, not {pair!r}")
        fields[key.strip()] = value
    return fields


def seal_files(
    cfg: ClientConfig,
    creds: Credentials,
    files: Sequence[Path],
    kind: BundleKind,
    fields: Mapping[str, Any],
    *,
    now: dt.datetime,
    progress: Callable[[int], None] | None = None,
) -> SealedBundle:
    """Check both certificates, seal ``files`` for the pinned node, record the bundle.

    Raises :class:`~exchange_common.errors.CertificateError` (own or node certificate unusable) and
    :class:`InputError` (missing file, duplicate member name, bad fields).
    """
    if kind not in PUSH_KINDS:
        raise InputError(f"a department cannot push bundles of kind {kind.value}")
    if not files:
        raise InputError("nothing to push: name at least one file")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise InputError("two files share a name: a bundle's member names must be unique")
    check_own_certificate(creds, cfg, now)
    check_node_certificate(creds, now)
    bundle_id = uuid.uuid4()
    path = cfg.folder("sent") / f"{bundle_id}.bundle"
    result = seal_to_file(
        [Member(f.name, f) for f in files],
        path,
        signer_key=creds.key,
        signer_chain=list(creds.chain),
        recipients=[creds.node_cert],
        kind=kind,
        fields=dict(fields),
        now=now,
        bundle_id=bundle_id,
        progress=progress,
    )
    record = PushedBundle(
        bundle_id=str(result.bundle_id),
        kind=kind.value,
        created_at=rfc3339(now),
        members=len(files),
        size=result.length,
        sha256=result.sha256,
        in_reply_to=fields["in_reply_to"] if isinstance(fields.get("in_reply_to"), str) else None,
    )
    with locked_state(cfg.state_path) as state:
        state.pushed[record.bundle_id] = record
    return SealedBundle(path, record)


def upload_bundle(
    cfg: ClientConfig,
    sealed: SealedBundle,
    *,
    retries: int | None = None,
    progress: TransferProgress | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
) -> None:
    """Upload the sealed bundle as ``/inbox/<BUNDLE_ID>.bundle`` and record the time.

    A retried upload starts over; if an earlier attempt did arrive, the node answers the
    second copy with an ``E_REPLAY`` receipt, which never overrides an ``accepted`` one.
    """

    async def put(session: Session) -> None:
        await session.upload(sealed.path, sealed.path.name, progress)

    run_with_node(cfg, put, retries=retries, on_retry=on_retry)
    with locked_state(cfg.state_path) as state:
        rec = state.pushed.get(sealed.record.bundle_id)
        if rec is not None:
            rec.uploaded_at = rfc3339(dt.datetime.now(dt.UTC))


def kept_bundle(cfg: ClientConfig, bundle_id: str) -> SealedBundle:
    """The sealed copy of pushed bundle ``bundle_id`` (a whole id) in ``DIR/sent``, to upload
    again: byte for byte what was sealed (size and SHA-256 as recorded).

    Raises :class:`InputError` (exit 3): ``E_NOT_FOUND`` when this directory pushed no such
    bundle; ``E_ANSWERED`` when the node's receipt already answered it (accepted or rejected:
    nothing to resend); ``E_SENT_MISSING`` when its file is gone (the ``sent/`` policy, or a
    hand) or differs from what was sealed.
    """
    rec = read_state(cfg.state_path).pushed.get(bundle_id)
    if rec is None:
        raise InputError(f"no bundle {bundle_id} was pushed from {cfg.dir}", code="E_NOT_FOUND")
    if rec.verdict != WAITING:
        raise InputError(
            f"bundle {bundle_id} was already {rec.verdict} by the node (its receipt is pulled): "
            "nothing to resend; to send the files again, push them as a new bundle",
            code="E_ANSWERED",
        )
    path = cfg.dir / "sent" / f"{bundle_id}.bundle"
    try:
        same = path.stat().st_size == rec.size and sha256_file(path) == rec.sha256
    except FileNotFoundError:
        raise InputError(
            f"{path} is gone (the sent/ policy or a person removed it): push the files again "
            "as a new bundle",
            code="E_SENT_MISSING",
        ) from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}", code="E_SENT_MISSING") from e
    if not same:
        raise InputError(
            f"{path} is not the bundle that was sealed (size or SHA-256 differs): push the "
            "files again as a new bundle",
            code="E_SENT_MISSING",
        )
    return SealedBundle(path, rec)


def wait_for_receipt(
    cfg: ClientConfig,
    creds: Credentials,
    bundle_id: str,
    out_dir: Path,
    *,
    timeout: float,
    interval: float = 1.0,
    retries: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[PushedBundle, list[PullOutcome]]:
    """Pull receipts until one answers ``bundle_id`` or ``timeout`` seconds pass.

    Returns the pushed record (verdict ``accepted`` or ``rejected``) and what was pulled.
    Raises :class:`TransportError` ``E_TIMEOUT`` when no receipt came in time, and
    :class:`InputError` ``E_NOT_UPLOADED`` at once when the first pull brought no receipt and
    the bundle was never uploaded nor exported (no receipt can come: ``resend`` it).
    """
    deadline = clock() + timeout
    pulled: list[PullOutcome] = []
    while True:
        outcomes, _ = pull(
            cfg, creds, out_dir, only=lambda n: n.startswith("receipt-"), retries=retries
        )
        pulled.extend(outcomes)
        rec = read_state(cfg.state_path).pushed.get(bundle_id)
        if rec is not None and rec.verdict != WAITING:
            return rec, pulled
        if rec is not None and rec.uploaded_at is None and rec.exported_to is None:
            raise InputError(
                f"bundle {bundle_id} was sealed but never reached the node (its upload failed "
                f"or was interrupted): `exchange-client resend {bundle_id}` uploads it",
                code="E_NOT_UPLOADED",
            )
        if clock() + interval > deadline:
            raise TransportError(
                f"no receipt for bundle {bundle_id} within {timeout:g} s: the node may be busy; "
                "run `exchange-client pull` later to fetch it",
                code="E_TIMEOUT",
            )
        sleep(interval)
