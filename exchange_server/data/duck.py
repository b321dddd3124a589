"""DuckDB connections for the node: the bundled httpfs extension and the node data key.

Datasets at rest are Parquet encrypted by DuckDB (AES-GCM, footer key) under the node data key
(decision 0003). Writing encrypted Parquet needs DuckDB's OpenSSL crypto, which comes with the
``httpfs`` extension; the extension file ships in the ``duckdb-extension-httpfs`` wheel and is
loaded from there by path, so nothing is downloaded at run time.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

import duckdb

from exchange_common.errors import InputError
from exchange_common.fs import atomic_write
from exchange_common.tables.sql import quote_literal

__all__ = ["DATA_KEY_NAME", "KEY_NAME", "connect", "load_data_key"]

#: File name of the node data key under ``HOME/node``.
DATA_KEY_NAME = "data.key"
#: Name under which the data key is registered in a connection (``encryption_config``).
KEY_NAME = "node_data_key"

_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _httpfs_path() -> Path:
    import duckdb_extension_httpfs  # type: ignore[import-untyped]

    base = Path(duckdb_extension_httpfs.__file__).parent / "extensions"
    path = base / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.is_file():
        raise InputError(
            f"duckdb {duckdb.__version__} has no matching duckdb-extension-httpfs "
            "(pin both to the same version, see docs/decisions/0003-datasets-at-rest.md)",
            code="E_INSTALL",
        )
    return path


def load_data_key(home: Path, *, create: bool = True) -> str:
    """The node data key (base64 of 32 random bytes), created 0600 on first use.

    Raises InputError ``E_DATA_KEY`` if the file is missing (``create=False``) or malformed.
    """
    path = home / "node" / DATA_KEY_NAME
    if not path.exists():
        if not create:
            raise InputError(f"node data key missing: {path}", code="E_DATA_KEY")
        path.parent.mkdir(parents=True, exist_ok=True)
        text = base64.b64encode(secrets.token_bytes(32)).decode()
        # another process may create it meanwhile: then theirs is used
        with contextlib.suppress(FileExistsError):
            atomic_write(path, text.encode() + b"\n", 0o600, exclusive=True)
    text = path.read_text(encoding="ascii").strip()
    try:
        if len(base64.b64decode(text, validate=True)) != 32:
            raise ValueError
    except ValueError:
        raise InputError(f"{path} is not a node data key", code="E_DATA_KEY") from None
    return text


def connect(
    data_key: str | None = None,
    *,
    threads: int | None = None,
    memory_limit: str | None = None,
    temp_directory: Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with httpfs loaded and ``data_key`` registered as KEY_NAME.

    Progress bars are off; ``threads``/``memory_limit``/``temp_directory`` are applied when given.
    """
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"LOAD '{_httpfs_path()}'")
        if data_key is not None:
            if not _B64.fullmatch(data_key):
                raise InputError("the node data key is not base64", code="E_DATA_KEY")
            con.execute(f"PRAGMA add_parquet_key('{KEY_NAME}', '{data_key}')")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
        if temp_directory is not None:
            con.execute(f"SET temp_directory = {quote_literal(str(temp_directory))}")
    except BaseException:
        con.close()
        raise
    return con


def encrypted_scan(paths: Path | Sequence[Path], *, row_numbers: bool = False) -> str:
    """SQL relation reading encrypted Parquet file(s) (the data key must be registered);
    with ``row_numbers`` a ``file_row_number`` column gives each row's position in its file."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    listed = ", ".join(quote_literal(str(f)) for f in files)
    numbered = ", file_row_number = true" if row_numbers else ""
    return (
        f"read_parquet([{listed}]{numbered}, "
        f"encryption_config = {{footer_key: {quote_literal(KEY_NAME)}}})"
    )


def copy_encrypted(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
    """Write the rows of ``query`` to ``target`` as Parquet encrypted under the data key
    (zstd level 1, Parquet v2: the layout every stored dataset and answer has)."""
    con.execute(
        f"COPY ({query}) TO {quote_literal(str(target))} (FORMAT parquet, COMPRESSION zstd, "
        f"COMPRESSION_LEVEL 1, PARQUET_VERSION v2, "
        f"ENCRYPTION_CONFIG {{footer_key: {quote_literal(KEY_NAME)}}})"
    )
