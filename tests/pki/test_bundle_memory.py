"""Memory stays flat: sealing and opening a 2 GiB bundle peaks under 150 MiB RSS.

Runs in a child process that reports its own peak resident set size from ``VmHWM`` in
/proc/self/status. Not ``ru_maxrss``: Linux carries the forking parent's RSS high-water mark
across exec into it, so a child of a large pytest process would report pytest's size. The input is a repeated 1 MiB random block: fast
to write and incompressible enough that nothing can cheat on size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SIZE = 2 * 1024**3
LIMIT_MIB = 150

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from pki.bundle import Member, open_bundle, seal_to_file, verify
    from tests.conftest import make_ca
    from tests.pki.bundlegen import make_parties

    base = Path(sys.argv[1]); size = int(sys.argv[2])
    ca = make_ca(base / "ca")
    p = make_parties(ca)
    src = base / "big.bin"
    block = os.urandom(1 << 20)
    with src.open("wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
    timings = {}
    t = time.perf_counter()
    seal_to_file([Member("big.bin", src)], base / "big.bundle", signer_key=p.sender.key,
                 signer_chain=p.sender.chain, recipients=[p.recipient.certificate],
                 kind="file", now=p.now)
    timings["seal"] = time.perf_counter() - t
    src.unlink()
    t = time.perf_counter()
    verify(base / "big.bundle", p.trust, now=p.now)
    timings["verify"] = time.perf_counter() - t
    t = time.perf_counter()
    opened = open_bundle(base / "big.bundle", base / "out", recipient_key=p.recipient.key,
                         recipient_cert=p.recipient.certificate, trust=p.trust, now=p.now)
    timings["open"] = time.perf_counter() - t
    assert opened.paths[0].stat().st_size == size
    ca.ca.close()
    hwm = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")]
    print(json.dumps({"timings": timings, "peak_kib": int(hwm[0].split()[1])}))
    """
)


def test_seal_and_open_2_gib_in_flat_memory(tmp_path: Path) -> None:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(SIZE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_mib = report["peak_kib"] / 1024
    elapsed = time.perf_counter() - started
    print(f"peak RSS {peak_mib:.0f} MiB, total {elapsed:.1f}s, phases {report['timings']}")
    assert peak_mib < LIMIT_MIB
