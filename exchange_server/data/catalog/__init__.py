"""Published catalog versions on the node (办法 第七条: published versions are immutable).

:class:`CatalogStore` keeps them as ``HOME/catalog/v<N>.toml`` with their SHA-256 in
``HOME/catalog/index.json``; loading a version whose file no longer matches its recorded digest
fails with ``E_TAMPERED``. The catalog format itself (resources, items, parsing, the access
rule) is shared with the department client and lives in :mod:`exchange_common.catalog`.
"""

from __future__ import annotations

from exchange_server.data.catalog.store import CatalogStore, CatalogVersion

__all__ = ["CatalogStore", "CatalogVersion"]
