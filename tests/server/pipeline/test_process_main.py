"""The pipeline child's own entry point (``python -m exchange_server.pipeline.process``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_home_that_cannot_be_opened_is_one_line_and_exit_3(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "exchange_server.pipeline.process", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert r.returncode == 3
    assert "Traceback" not in r.stderr
    assert "(E_CONFIG)" in r.stderr and "exchange-server init" in r.stderr
