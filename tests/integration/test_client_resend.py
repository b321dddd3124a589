"""Ctrl-C during an upload, then ``resend``, against a real node.

The attack on the node's integrity this guards against is an accident: an operator's Ctrl-C
used to close the remote file (asyncssh's ``put`` closes it on the way out), so the node took
a truncated bundle for a whole one, processed it and kept it in quarantine. Now the client
drops the connection with the file still open: the node discards the bytes as an aborted
upload (nothing processed, nothing quarantined, no receipt), the client says ``interrupted``
and exits 130, and ``resend`` uploads the kept bundle.

The client runs as a real process and gets a real SIGINT once the node holds part of the
upload (its partial file has bytes): no fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_client.state import read_state
from tests.integration.node_harness import DeptSpec, NodeHarness, wait_until
from tests.integration.test_client_node import MZ, cli, init_args

pytestmark = pytest.mark.integration

#: Large enough that an upload over loopback takes far longer than one poll of the test.
BIG = 48 * 1024 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeHarness]:
    with NodeHarness(tmp_path_factory.mktemp("resend"), [DeptSpec(MZ)]) as h:
        yield h


def _client(node: NodeHarness, directory: Path, transport: str) -> None:
    extra: list[str] = []
    if transport == "paramiko":
        key = node.depts[MZ].ssh_key_path
        assert key is not None
        extra = ["--ssh-key", str(key), "--transport", "paramiko"]
    r = cli(*init_args(node, directory), *extra)
    assert r.exit_code == 0, r.output


def _partial_with_bytes(node: NodeHarness) -> bool:
    for p in node.partial_files():
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_size > 0:
                return True
    return False


def _interrupted_push(node: NodeHarness, client: Path, tmp_path: Path) -> str:
    """Push a big bundle in a real client process, SIGINT it mid-upload; return its id."""
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for _ in range(BIG // (1 << 20)):
            f.write(os.urandom(1 << 20))
    argv = [sys.executable, "-c", "from exchange_client.cli import main; main()"]
    argv += ["push", "--dir", str(client), "--kind", "recheck", "--retries", "0", str(big)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(
            lambda: proc.poll() is not None or _partial_with_bytes(node),
            timeout=120,
            what="the node holding part of the upload",
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err + out
    [rec] = read_state(client / "state.json").pushed.values()
    assert f"exchange-client resend {rec.bundle_id}" in err
    return rec.bundle_id


@pytest.mark.parametrize("transport", ["asyncssh", "paramiko"])
def test_ctrl_c_mid_upload_leaves_nothing_on_the_node_then_resend_is_accepted(
    node: NodeHarness, tmp_path: Path, transport: str
) -> None:
    client = tmp_path / "client"
    _client(node, client, transport)
    quarantine = set(node.spool.quarantine.iterdir())
    outbox = set(node.outbox(MZ).iterdir())
    log_before = len(node.log_text())

    bundle_id = _interrupted_push(node, client, tmp_path)

    # the node saw the session end with the file open: bytes discarded, nothing processed
    wait_until(lambda: not node.partial_files(), timeout=30, what="the partial discarded")
    wait_until(
        lambda: "aborted (session ended" in node.log_text()[log_before:],
        timeout=30,
        what="the node logging the aborted upload",
    )
    assert [u for u in node.uploads(MZ) if u.file_name == f"{bundle_id}.bundle"] == []
    assert set(node.spool.quarantine.iterdir()) == quarantine
    assert set(node.outbox(MZ).iterdir()) == outbox

    # the client knows it never arrived
    r = cli("status", "--dir", client, "--json")
    assert r.exit_code == 0, r.output
    [pushed] = json.loads(r.stdout)["pushed"]
    assert (pushed["stage"], pushed["uploaded_at"]) == ("sealed", None)
    assert "sealed, not uploaded" in cli("status", "--dir", client).stdout
    r = cli("wait", "--dir", client, bundle_id, "--timeout", "30")
    assert r.exit_code == 3, r.output
    assert "(E_NOT_UPLOADED)" in r.output and f"exchange-client resend {bundle_id}" in r.output
    assert "may be busy" not in r.output

    # resend by the first characters of the id: the same bytes go, the node accepts them
    r = cli("resend", "--dir", client, bundle_id[:8], "--wait", "--timeout", "60", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["bundle_id"], out["verdict"], out["stage"]) == (bundle_id, "accepted", "accepted")
    [upload] = [u for u in node.uploads(MZ) if u.file_name == f"{bundle_id}.bundle"]
    assert upload.size == (client / "sent" / f"{bundle_id}.bundle").stat().st_size

    # answered: nothing to resend
    r = cli("resend", "--dir", client, bundle_id)
    assert r.exit_code == 3 and "(E_ANSWERED)" in r.output, r.output
    assert len([u for u in node.uploads(MZ) if u.file_name == f"{bundle_id}.bundle"]) == 1


def test_resending_a_bundle_that_did_arrive_keeps_accepted(
    node: NodeHarness, tmp_path: Path
) -> None:
    """Uploaded, receipt not pulled yet: a resend is harmless (E_REPLAY never overrides)."""
    client = tmp_path / "client"
    _client(node, client, "asyncssh")
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    r = cli("push", "--dir", client, "--kind", "recheck", "--json", data)
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["stage"] == "uploaded"
    assert "uploaded, awaiting receipt" in cli("status", "--dir", client).stdout
    r = cli("resend", "--dir", client, first["bundle_id"], "--wait", "--timeout", "60", "--json")
    assert r.exit_code == 0, r.output
    assert "was uploaded before" not in r.stdout  # notes go to stderr, JSON stays clean
    assert json.loads(r.stdout)["verdict"] == "accepted"
