"""DuckDB connections: the httpfs extension loaded from a private copy DuckDB verified once."""

from __future__ import annotations

import stat
from pathlib import Path

import duckdb
import pytest

from exchange_server.data import duck

KEY = "A" * 43 + "="


def test_connections_load_one_private_verified_copy() -> None:
    first = duck.connect(KEY)
    second = duck.connect(KEY)
    try:
        copy = duck._verified_httpfs()
        assert stat.S_IMODE(copy.stat().st_mode) == 0o400
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
        assert copy.read_bytes() == duck._httpfs_path().read_bytes()
        for con in (first, second):
            loaded = con.execute(
                "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
            ).fetchall()
            assert loaded == [(True,)]
            # nothing else is fetched or loaded by itself
            assert con.execute(
                "SELECT current_setting('autoload_known_extensions'), "
                "current_setting('autoinstall_known_extensions')"
            ).fetchall() == [(False, False)]
    finally:
        first.close()
        second.close()


def test_a_tampered_extension_is_refused_and_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first load of the private copy checks DuckDB's signature: an extension file changed
    by one byte fails there, no connection is opened with it, and nothing is remembered."""
    real = duck._httpfs_path().read_bytes()
    forged = tmp_path / "httpfs.duckdb_extension"
    data = bytearray(real)
    data[len(data) // 2] ^= 0x01
    forged.write_bytes(bytes(data))
    monkeypatch.setattr(duck, "_verified", None)
    monkeypatch.setattr(duck, "_httpfs_path", lambda: forged)
    with pytest.raises(duckdb.Error, match="signature"):
        duck.connect(KEY)
    assert duck._verified is None
    with pytest.raises(duckdb.Error):  # and again: never cached, checked each time
        duck.connect(KEY)
