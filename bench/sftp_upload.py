"""Benchmark: the node's SFTP front against OpenSSH's own sftp-server, in the same run.

1. Throughput: the OpenSSH ``sftp`` client uploads the same file (a sealed bundle of ``--size``
   bytes) to OpenSSH ``sshd`` with ``internal-sftp`` on a loopback port, and to our node's
   ``/inbox``; prints the throughputs and the ratios: against OpenSSH with its own cipher
   (goal: node >= 0.8 x) and with the node's cipher, AES-GCM (goal: node >= 1.0 x).
2. Load: ``--clients`` concurrent asyncssh clients push ``--bundles`` small sealed bundles;
   prints bundles/s, p50/p99 latency from the start of an upload to its signed receipt being
   in the department's outbox (goal: p99 < 1 s), and the node's peak RSS.

Not a test: nothing is asserted. Needs ``/usr/sbin/sshd`` (Debian: openssh-server) and the
``sftp`` client. Everything listens on 127.0.0.1 only and stops by itself.

    .venv/bin/python bench/sftp_upload.py                 # 1 GiB, 50 clients, 1000 bundles
    .venv/bin/python bench/sftp_upload.py --size 256MiB --clients 10 --bundles 200
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange_server.pipeline.stages import STAGES, parse_timings
from pki.bundle import Member, seal_to_file
from pki.keys import load_certificates, load_private_key
from tests.integration.node_harness import DeptSpec, NodeHarness, free_loopback_port

UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_size(text: str) -> int:
    for suffix, mult in UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(text)


def seal_file(h: NodeHarness, code: str, src: Path, out: Path, size: int) -> None:
    cred = h.depts[code]
    with src.open("rb") as fh:
        seal_to_file(
            [Member("data.bin", fh, size=size)],
            out,
            signer_key=load_private_key(cred.key_path),
            signer_chain=load_certificates(cred.cert_path),
            recipients=[load_certificates(h.root / "creds" / "NODE01.pem")[0]],
            kind="data",
            now=dt.datetime.now(dt.UTC),
        )


def make_payload(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n


def start_sshd(work: Path, pubkey: str) -> tuple[subprocess.Popen[bytes], int]:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        sys.exit("sshd not found: apt-get install openssh-server")
    Path("/run/sshd").mkdir(exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "host")], check=True
    )
    (work / "authorized_keys").write_text(pubkey)
    (work / "dest").mkdir()
    port = free_loopback_port()
    cfg = work / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\n"
        f"PidFile {work / 'sshd.pid'}\nAuthorizedKeysFile {work / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin yes\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(cfg)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def sftp_put(argv: list[str], local: Path, remote: str, work: Path) -> float:
    batch = work / f"batch-{uuid.uuid4().hex}"
    batch.write_text(f"put {local} {remote}\n")
    start = time.perf_counter()
    subprocess.run([*argv[:-1], "-b", str(batch), argv[-1]], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


#: The node's cipher: the same-cipher comparison pins OpenSSH to it.
GCM = "aes128-gcm@openssh.com"


def throughput(
    h: NodeHarness, work: Path, size: int, runs: int
) -> tuple[list[float], list[float], list[float]]:
    """Bytes/s, run by run, of OpenSSH's sftp-server with its own cipher, with the node's
    (AES-GCM), and of the node (which negotiates AES-GCM with OpenSSH's client)."""
    payload, bundle = work / "payload.bin", work / "big.bundle"
    make_payload(payload, size)
    seal_file(h, "MZ330100", payload, bundle, size)
    payload.unlink()
    nbytes = bundle.stat().st_size
    cred = h.depts["MZ330100"]
    assert cred.ssh_key_path is not None and cred.ssh_public is not None
    sshd, port = start_sshd(work, cred.ssh_public)
    try:
        ossh_argv = [
            "sftp",
            "-F",
            "/dev/null",
            "-oBatchMode=yes",
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oIdentitiesOnly=yes",
            "-oLogLevel=ERROR",
            "-i",
            str(cred.ssh_key_path),
            "-P",
            str(port),
            f"{os.environ.get('USER', 'root')}@127.0.0.1",
        ]
        pinned = [*ossh_argv[:-1], "-c", GCM, ossh_argv[-1]]
        node_argv = h.sftp_argv("MZ330100")
        # The three alternate, run by run, so a machine that speeds up or slows down during
        # the bench weighs on all of them alike.
        own, gcm, ours = [], [], []
        for i in range(runs):
            own.append(sftp_put(ossh_argv, bundle, str(work / "dest" / f"b{i}"), work))
            gcm.append(sftp_put(pinned, bundle, str(work / "dest" / f"g{i}"), work))
            ours.append(sftp_put(node_argv, bundle, f"/inbox/big{i}.bundle", work))
            # The node then verifies and opens the bundle (its pipeline, on the same cores):
            # the next run starts on an idle node, as each OpenSSH run does.
            wait_receipt(h, f"big{i}.bundle")
            for f in (work / "dest").iterdir():
                f.unlink()
    finally:
        sshd.terminate()
        sshd.wait(10)
    return [nbytes / t for t in own], [nbytes / t for t in gcm], [nbytes / t for t in ours]


def wait_receipt(h: NodeHarness, name: str, timeout: float = 600.0) -> None:
    """Wait until the upload named ``name`` has its receipt; raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(u.file_name == name and u.receipt_name for u in h.uploads()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no receipt for {name} within {timeout:.0f} s")


async def push(
    h: NodeHarness, code: str, items: list[tuple[str, Path]], starts: dict[str, float]
) -> None:
    async with h.asyncssh_connect(code) as conn, conn.start_sftp_client() as sftp:
        for bid, path in items:
            starts[bid] = time.time()
            await sftp.put(str(path), f"/inbox/{path.name}")


def load_test(
    h: NodeHarness, work: Path, clients: int, bundles: int, codes: list[str], *, tag: str = "load"
) -> tuple[float, float, float]:
    """Upload ``bundles`` small bundles from ``clients`` clients; print and return
    (bundles/s, p50 s, p99 s) from upload start to receipt."""
    small = work / f"small-{tag}"
    small.mkdir()
    node_cert = load_certificates(h.root / "creds" / "NODE01.pem")[0]
    jobs: dict[str, list[tuple[str, Path]]] = {c: [] for c in codes}
    now = dt.datetime.now(dt.UTC)
    for i in range(bundles):
        code = codes[i % len(codes)]
        cred = h.depts[code]
        bid = uuid.uuid4()
        body = os.urandom(1500)
        path = small / f"{i:05d}.bundle"
        seal_to_file(
            [Member("d.bin", io.BytesIO(body), size=len(body))],
            path,
            signer_key=load_private_key(cred.key_path),
            signer_chain=load_certificates(cred.cert_path),
            recipients=[node_cert],
            kind="data",
            now=now,
            bundle_id=bid,
        )
        jobs[code].append((str(bid), path))
    # split each department's bundles over its share of the clients
    per_dept = max(1, clients // len(codes))
    starts: dict[str, float] = {}

    async def run_all() -> None:
        tasks = []
        for code, items in jobs.items():
            for k in range(per_dept):
                tasks.append(push(h, code, items[k::per_dept], starts))
        await asyncio.gather(*tasks)

    t0 = time.time()
    asyncio.run(run_all())
    deadline = time.time() + 300
    while time.time() < deadline:
        ups = [
            u
            for u in h.uploads()
            if u.kind == "data" and u.file_name.endswith(".bundle") and u.bundle_id in starts
        ]
        if len(ups) == bundles and all(u.receipt_name for u in ups):
            break
        time.sleep(0.2)
    latencies, last = [], t0
    for u in ups:
        assert u.receipt_name and u.bundle_id
        receipt = h.outbox(u.dept_code) / u.receipt_name
        done = receipt.stat().st_mtime
        latencies.append(done - starts[u.bundle_id])
        last = max(last, done)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    assert h.proc is not None
    rss = sum(peak_rss(pid) for pid in node_pids(h.proc.pid))
    print(f"\n{tag}: {clients} clients, {bundles} bundles of ~2 KB")
    print(f"  bundles/s (upload start -> last receipt): {bundles / (last - t0):8.1f}")
    print(f"  upload-to-receipt latency p50: {p50 * 1000:8.1f} ms")
    print(f"  upload-to-receipt latency p99: {p99 * 1000:8.1f} ms   (goal < 1000 ms)")
    print(f"  node peak RSS (front + pipeline): {rss / 2**20:8.1f} MiB")
    print_stages(h.log_path.read_text(encoding="utf-8", errors="replace"), {u.id for u in ups})
    return bundles / (last - t0), p50, p99


class Scraper:
    """Fetches the node's /metrics and /status.json every ``every`` seconds on a thread, as a
    Prometheus server and a dashboard would, while a load runs."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every, self.count = url, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for path in ("metrics", "status.json"):
                with urllib.request.urlopen(self.url + path, timeout=30) as r:  # noqa: S310
                    r.read()
            self.count += 1

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def scrape_compare(
    h: NodeHarness, work: Path, clients: int, bundles: int, codes: list[str], every: float
) -> None:
    """The same load without and with the monitor scraped, alternated twice: the cost of
    metrics collection as a ratio of bundles/s."""
    assert h.monitor_url is not None
    plain, scraped = [], []
    for rnd in range(2):
        plain.append(load_test(h, work, clients, bundles, codes, tag=f"plain-{rnd}")[0])
        with Scraper(h.monitor_url, every) as sc:
            scraped.append(load_test(h, work, clients, bundles, codes, tag=f"scraped-{rnd}")[0])
        print(f"  (scraped /metrics and /status.json {sc.count} times, every {every:g} s)")
    ratio = statistics.median(s / p for s, p in zip(scraped, plain, strict=True))
    print(
        f"\nmonitor cost: bundles/s without scraping {' '.join(f'{x:.1f}' for x in plain)}, "
        f"scraped every {every:g} s {' '.join(f'{x:.1f}' for x in scraped)}"
    )
    print(f"  median ratio scraped / not scraped: {ratio:.2f}   (goal: no measurable cost, ~1.0)")


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_FRONT = re.compile(r" upload (\S+) (started by|from \S+ committed)")


def print_stages(log_text: str, upload_ids: set[str]) -> None:
    """Each stage's p50/p99 over ``upload_ids``, from the node's log: the front's upload
    (first write to commit, from its two log lines) and the pipeline's stage timings
    (:mod:`exchange_server.pipeline.stages`)."""
    per_stage: dict[str, list[float]] = {}
    opened: dict[str, dt.datetime] = {}
    for line in log_text.splitlines():
        timings = parse_timings(line)
        if timings is not None:
            uid = line.split(" upload ", 1)[1].split()[0]
            if uid in upload_ids:
                for stage, ms in timings.items():
                    per_stage.setdefault(stage, []).append(ms)
            continue
        m, stamp = _FRONT.search(line), _STAMP.match(line)
        if m is None or stamp is None or m.group(1) not in upload_ids:
            continue
        at = dt.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if m.group(2).startswith("started"):
            opened[m.group(1)] = at
        elif m.group(1) in opened:
            ms = (at - opened.pop(m.group(1))).total_seconds() * 1000
            per_stage.setdefault("upload", []).append(ms)
    print("  stages (ms, per upload)          p50       p99")
    for stage in ("upload", *STAGES, "total"):
        values = sorted(per_stage.get(stage, []))
        if values:
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            print(f"    {stage:<28} {statistics.median(values):8.1f}  {p99:8.1f}")


def node_pids(pid: int) -> list[int]:
    """The node process and its children (the ingest pipeline runs in one)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


def peak_rss(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="1GiB", help="upload size for the throughput run")
    ap.add_argument("--runs", type=int, default=3, help="throughput runs per server (best kept)")
    ap.add_argument(
        "--no-throughput", action="store_true", help="skip the throughput part (load only)"
    )
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--bundles", type=int, default=1000)
    ap.add_argument("--depts", type=int, default=5, help="departments the clients log in as")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument(
        "--scrape-every",
        type=float,
        default=0.0,
        help="instead of one load: the load twice without and twice with the node's monitor "
        "scraped every so many seconds, alternated (the cost of metrics collection)",
    )
    args = ap.parse_args()
    size = parse_size(args.size)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-sftp-"))
    work.mkdir(parents=True, exist_ok=True)
    codes = ["MZ330100"] + [f"D{i:02d}" for i in range(1, args.depts)]
    specs = [DeptSpec(c, quota_bytes=64 << 30) for c in codes]
    # Every client logs in from 127.0.0.1 at once: the per-address pre-login cap (meant for
    # one misbehaving address among many departments) is raised to the bench's client count.
    security = {
        "max_upload_bytes": 64 << 30,
        "max_preauth_per_address": max(32, args.clients),
        "max_preauth_connections": max(64, args.clients),
    }
    try:
        monitor = ["--monitor", "127.0.0.1:0"]
        with NodeHarness(work / "node", specs, security=security, serve_args=monitor) as h:
            if not args.no_throughput:
                print_throughput(h, work, size, args.runs)
            if args.scrape_every > 0:
                scrape_compare(h, work, args.clients, args.bundles, codes, args.scrape_every)
            else:
                load_test(h, work, args.clients, args.bundles, codes)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def print_throughput(h: NodeHarness, work: Path, size: int, runs: int) -> None:
    """Run :func:`throughput` and print its figures and ratios."""
    own, gcm, node = throughput(h, work, size, runs)
    ossh, ossh_gcm, ours = max(own), max(gcm), max(node)
    # Each run's node figure against the same run's: the machine's drift cancels out.
    ratios = [n / g for n, g in zip(node, gcm, strict=True)]
    paired = statistics.median(ratios)
    print(
        f"\nthroughput, OpenSSH sftp client uploading {size / 2**20:.0f} MiB "
        f"(best of {runs}, runs alternated):"
    )
    print(f"  OpenSSH sshd internal-sftp, its own cipher:  {ossh / 2**20:8.1f} MiB/s")
    print(f"  OpenSSH sshd internal-sftp, {GCM}: {ossh_gcm / 2**20:8.1f} MiB/s")
    print(f"  exchange node /inbox ({GCM}):      {ours / 2**20:8.1f} MiB/s")
    print(f"  each run, node / same cipher: {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"  ratio node / OpenSSH, own cipher:  {ours / ossh:8.2f}   (goal >= 0.80)")
    print(f"  ratio node / OpenSSH, same cipher: {ours / ossh_gcm:8.2f}   (goal >= 1.0)")
    print(f"  median of the runs' same-cipher ratios: {paired:5.2f}")


if __name__ == "__main__":
    main()
