"""Removable-media exchange (办法 第十七条): the same sealed bundles, through a folder.

Where no network link to the node exists, ``export`` writes the sealed bundle into a folder
(an encrypted USB drive, say) instead of uploading it; the node's operator copies it into the
node's drop folder. The node's receipts and results come back the same way, and ``import``
reads them from a folder with exactly the checks ``pull`` applies to ``/outbox``: signed by the
pinned node, chain and CRL, opened only then, never processed twice.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from exchange_client.config import ClientConfig
from exchange_client.credentials import Credentials
from exchange_client.pull import PullOutcome, process_download, safe_outbox_name
from exchange_client.push import SealedBundle
from exchange_client.state import State, locked_state
from exchange_common.errors import InputError
from exchange_common.fs import atomic_output, sha256_file

__all__ = ["export_bundle", "import_folder"]


def export_bundle(cfg: ClientConfig, sealed: SealedBundle, folder: Path) -> Path:
    """Copy the sealed bundle into ``folder`` as ``<BUNDLE_ID>.bundle``, atomically.

    The file appears complete or not at all (a drive pulled out mid-copy leaves only a hidden
    temporary file), and an existing file is never replaced. Records where it went.
    """
    if not folder.is_dir():
        raise InputError(f"export folder {folder} does not exist", code="E_NOT_FOUND")
    target = folder / sealed.path.name
    try:
        with atomic_output(target, 0o644, exclusive=True) as out, sealed.path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
    except FileExistsError as e:
        raise InputError(f"{target} already exists", code="E_EXISTS") from e
    except OSError as e:
        raise InputError(f"cannot write to {folder}: {e.strerror}", code="E_IO") from e
    with locked_state(cfg.state_path) as state:
        rec = state.pushed.get(sealed.record.bundle_id)
        if rec is not None:
            rec.exported_to = str(target)
    return target


def _own_export(state: State, path: Path) -> PullOutcome | None:
    """``ignored`` when ``path`` is a bundle this directory sealed (same name, size and SHA-256
    as a pushed bundle): the medium carries it to the node, it is not for the client to open.
    A file merely named like one of ours is not ignored: it is verified like any other."""
    rec = state.pushed.get(path.name.removesuffix(".bundle"))
    if rec is None or not path.name.endswith(".bundle") or path.stat().st_size != rec.size:
        return None
    if sha256_file(path) != rec.sha256:
        return None
    return PullOutcome(path.name, "ignored", kind=rec.kind, bundle_id=rec.bundle_id)


def import_folder(
    cfg: ClientConfig, creds: Credentials, folder: Path, out_dir: Path, *, now: dt.datetime
) -> tuple[list[PullOutcome], list[str]]:
    """Verify and open every new bundle file in ``folder`` (as ``pull`` does for /outbox).

    Files are copied to a private staging folder first, so the medium is only read. Returns the
    outcomes and the names skipped as unsafe; files already imported (same bytes) come back as
    ``duplicate``, and this department's own sealed bundles (an ``export`` on the same medium,
    bound for the node's drop folder) as ``ignored``, neither opened nor recorded.
    """
    if not folder.is_dir():
        raise InputError(f"import folder {folder} does not exist", code="E_NOT_FOUND")
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=cfg.folder("pulled")))
    outcomes: list[PullOutcome] = []
    skipped: list[str] = []
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink())
        with locked_state(cfg.state_path) as state:
            for name in names:
                if name.startswith("."):
                    continue
                if not safe_outbox_name(name):
                    skipped.append(name)
                    continue
                if name in state.pulled:
                    continue
                own = _own_export(state, folder / name)
                if own is not None:
                    outcomes.append(own)
                    continue
                local = staging / name
                shutil.copyfile(folder / name, local)
                outcomes.append(process_download(cfg, creds, state, name, local, out_dir, now))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outcomes, skipped
