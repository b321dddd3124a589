"""Published catalog versions (办法 第七条): :class:`CatalogStore` and :class:`CatalogVersion`.

Versions are immutable: ``HOME/catalog/v<N>.toml`` is the published file byte for byte with its
SHA-256 in ``HOME/catalog/index.json``; loading a version whose file no longer matches its
recorded digest fails with ``E_TAMPERED``. Files are written atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exchange_common.catalog.model import (
    Catalog,
)
from exchange_common.catalog.parse import _read, parse_catalog
from exchange_common.errors import InputError
from exchange_common.fs import atomic_write, sha256_file

INDEX_NAME = "index.json"
#: Parsed catalog versions a store keeps (the newest few are what bundles refer to).
PARSED_KEPT = 8


@dataclass(frozen=True)
class CatalogVersion:
    """One published version as recorded in the index."""

    version: int
    file: str
    sha256: str
    content_sha256: str
    published_at: str
    resources: int
    intact: bool = True

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class CatalogStore:
    """Published catalog versions under ``HOME/catalog``: immutable files plus an index.

    ``v<N>.toml`` is the published file byte for byte (mode 0444); ``index.json`` records its
    SHA-256, the digest of its canonical content, the time and the number of resources.
    """

    root: Path
    _index: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    #: Parsed versions by the SHA-256 of their file: a long-lived store (the pipeline's)
    #: parses each version once, not once per bundle. The file is still read and its digest
    #: checked at every load.
    _parsed: dict[str, Catalog] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def for_home(cls, home: Path) -> CatalogStore:
        """The catalog store of a node home (which must exist)."""
        if not home.is_dir():
            raise InputError(f"{home} is not a node home", code="E_NOT_FOUND")
        return cls(home / "catalog")

    def _load_index(self) -> list[dict[str, Any]]:
        path = self.root / INDEX_NAME
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {path}: {e}", code="E_TAMPERED") from None
        if not isinstance(data, dict) or not isinstance(data.get("versions"), list):
            raise InputError(f"{path} is not a catalog index", code="E_TAMPERED")
        versions: list[dict[str, Any]] = data["versions"]
        return versions

    def versions(self) -> list[CatalogVersion]:
        """Every published version, oldest first, each checked against its digest."""
        out = []
        for entry in self._load_index():
            path = self.root / entry["file"]
            try:
                intact = sha256_file(path) == entry["sha256"]
            except OSError:
                intact = False
            out.append(CatalogVersion(**entry, intact=intact))
        return out

    def latest(self) -> int | None:
        """The newest version number, or None before the first publication."""
        index = self._load_index()
        return index[-1]["version"] if index else None

    def load(self, version: int | None = None) -> tuple[CatalogVersion, Catalog]:
        """Load one version (default: the latest), refusing a file that was changed."""
        index = self._load_index()
        if not index:
            raise InputError("no catalog has been published yet", code="E_NOT_FOUND")
        number = index[-1]["version"] if version is None else version
        entry = next((e for e in index if e["version"] == number), None)
        if entry is None:
            raise InputError(f"no catalog version {number}", code="E_NOT_FOUND")
        path = self.root / entry["file"]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"catalog v{number}: {path}: {e.strerror}", code="E_TAMPERED") from e
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise InputError(
                f"catalog v{number} was modified after publication: {path} no longer matches "
                f"its recorded SHA-256",
                code="E_TAMPERED",
            )
        catalog = self._parsed.get(entry["sha256"])
        if catalog is None:
            catalog = parse_catalog(data.decode(), source=str(path))
            while len(self._parsed) >= PARSED_KEPT:
                del self._parsed[next(iter(self._parsed))]
            self._parsed[entry["sha256"]] = catalog
        return CatalogVersion(**entry), catalog

    def publish(
        self, source: Path, *, now: dt.datetime | None = None
    ) -> tuple[CatalogVersion, bool]:
        """Publish ``source`` as the next version; returns (version, created).

        Content equal to the latest version (comments and layout aside) publishes nothing and
        returns that version with ``created=False``. The latest version must be intact.
        """
        data = _read(source).encode()
        catalog = parse_catalog(data.decode(), source=str(source))
        index = self._load_index()
        if index:
            latest, current = self.load()
            if current.digest() == catalog.digest():
                return latest, False
        number = (index[-1]["version"] + 1) if index else 1
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        entry = {
            "version": number,
            "file": f"v{number}.toml",
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_sha256": catalog.digest(),
            "published_at": when.isoformat(timespec="seconds"),
            "resources": len(catalog.resources),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        # the version file first (exclusive: a version number is never reused), then the index
        atomic_write(self.root / f"v{number}.toml", data, 0o444, exclusive=True)
        body = json.dumps({"versions": [*index, entry]}, ensure_ascii=False, indent=1)
        atomic_write(self.root / INDEX_NAME, body.encode() + b"\n", 0o644)
        return CatalogVersion(**entry), True  # type: ignore[arg-type]
