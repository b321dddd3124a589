"""The monitor of a running node, through real clients: curl for ``/healthz``, ``/status.json``
and ``/metrics`` (parsed as Prometheus text), and headless Chromium for the status page (its
rendered DOM checked, a screenshot taken). Nothing personal and no address in any of them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exchange_common.idnumber import check_character
from tests.integration.node_harness import DeptSpec, NodeHarness, require_binary, wait_until

pytestmark = pytest.mark.integration

MZ = "MZ330100"
ID = "33010219500101001" + check_character("33010219500101001")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeHarness:  # type: ignore[misc]
    root = tmp_path_factory.mktemp("monitor")
    with NodeHarness(root, [DeptSpec(MZ)], serve_args=["--monitor", "127.0.0.1:0"]) as h:
        assert h.monitor_url and h.monitor_url.startswith("http://127.0.0.1:")
        h.seal(MZ, f"id_number\n{ID}\n".encode(), root / "a.tmp").rename(
            h.home / "drop" / "a.bundle"
        )
        wait_until(lambda: [u for u in h.uploads() if u.state == "done"], what="the upload")
        yield h


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    curl = require_binary("curl")
    return subprocess.run(
        [curl, "-sS", "--max-time", "30", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _get(node: NodeHarness, path: str) -> tuple[int, dict[str, str], str]:
    assert node.monitor_url is not None
    r = _curl("-i", node.monitor_url + path.lstrip("/"))
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")  # text mode: CRLF read as LF
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body


def _no_personal_data(text: str) -> None:
    assert ID not in text and ID[:-1] not in text
    assert "127.0.0.1" not in text.replace("127.0.0.1:", "")  # no client address as a label


def test_healthz_and_status_json(node: NodeHarness) -> None:
    status, headers, body = _get(node, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers["cache-control"] == "no-store"
    status, headers, body = _get(node, "/status.json")
    doc = json.loads(body)
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert doc["schema"] == "exchange-node-status/1" and isinstance(doc["attention"], bool)
    assert doc["uploads"]["by_state"].get("done") == 1
    _no_personal_data(body)
    assert _get(node, "/nothing")[0] == 404


def test_only_reading_is_allowed(node: NodeHarness) -> None:
    assert node.monitor_url is not None
    r = _curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", node.monitor_url)
    assert r.stdout == "405"
    r = _curl("-o", "/dev/null", "-w", "%{http_code}", "-I", node.monitor_url + "healthz")
    assert r.stdout == "200"


def _samples(node: NodeHarness) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    status, headers, body = _get(node, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    return body, {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_metrics_come_from_the_store_the_front_and_the_pipeline_process(node: NodeHarness) -> None:
    verify = ("exchange_pipeline_stage_seconds_count", (("stage", "verify"),))
    # the pipeline runs in its own process: its stage timings reach this one's histograms
    # through its log lines, which follow the upload's state by a moment
    wait_until(lambda: _samples(node)[1].get(verify, 0) >= 1, timeout=30, what="stage timings")
    body, samples = _samples(node)
    key = ("exchange_uploads", (("department", MZ), ("kind", "file"), ("state", "done")))
    assert samples[key] == 1
    assert samples[("exchange_upload_bytes", key[1])] > 0
    assert samples[("exchange_crl_current", ())] == 1
    assert samples[("exchange_audit_events", ())] >= 1
    assert samples[("exchange_pipeline_upload_seconds_count", ())] >= 1
    labels = {k for (_, items) in samples for k, _ in items}
    assert labels <= {"department", "kind", "state", "reason", "stage", "result", "method", "le"}
    _no_personal_data(body)


def test_a_login_is_counted(node: NodeHarness) -> None:
    def logins() -> float:
        samples = _samples(node)[1]
        return sum(v for (name, labels), v in samples.items()
                   if name == "exchange_logins_total" and ("result", "ok") in labels)  # fmt: skip

    before = logins()
    sftp = shutil.which("sftp")
    if sftp is None:
        pytest.skip("the OpenSSH sftp client is not installed")
    dept = node.depts[MZ]
    batch = node.root / "ls.batch"
    batch.write_text("ls /outbox\n")
    subprocess.run(
        [
            sftp, "-b", str(batch), "-P", str(node.port), "-i", str(dept.ssh_key_path),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", f"{MZ}@127.0.0.1",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    wait_until(lambda: logins() >= before + 1, timeout=30, what="the login counted")


def test_the_status_page_in_headless_chromium(node: NodeHarness, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    assert node.monitor_url is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", node.monitor_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "Exchange node NODE01" in dom and "Uploads by department" in dom
    assert MZ in dom and "Health" in dom
    assert "nothing needs attention" in dom or "needs attention" in dom
    _no_personal_data(dom)
    shot = tmp_path / "status.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1280,1000", f"--screenshot={shot}", node.monitor_url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
