"""Benchmark: sealed bundles against age and OpenSSL CMS on the same file, in the same run.

    .venv/bin/python bench/seal.py                 # 1 GiB
    .venv/bin/python bench/seal.py --size 256MiB --repeat 3 --dir /var/tmp/bench

Every tool runs as its own process (``exchange-pki bundle ...``, ``age``, ``openssl cms``) under
``/usr/bin/time`` for the peak RSS, reading the same input from the page cache. Two sinks:

- ``file``: output to a file in ``--dir``, then fsynced, inside the timing (``exchange-pki``
  fsyncs by itself because a bundle must be durable before it is visible; the others are
  fsynced by this script so the comparison is fair);
- ``null``: output to /dev/null, which measures CPU work only (encrypt side; opening a
  bundle always writes its members, so it has no null variant).

Work per tool: ours seals = SHA-256 of every member + Cobblestone-128 (AES-128-GCM chunks) +
SHA-256 of the ciphertext + one signature; opens = verify pass (SHA-256) + decrypt pass
(SHA-256 of ciphertext and plaintext). age = X25519 + ChaCha20-Poly1305, no signature.
OpenSSL CMS = ``cms -sign`` (SHA-256 + ECDSA, streamed) then ``cms -encrypt`` (AES-256-CBC to
the same EC recipient certificate) and back with ``cms -decrypt`` then ``cms -verify``.

Not a test: numbers depend on the machine. Requires ``age``/``age-keygen`` (Debian: ``apt-get
install age``) and ``openssl`` on PATH; a missing tool is reported and skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pki.ca import CertificateAuthority
from pki.identity import DeptCode, parse_networks
from pki.keys import certificate_pem, private_key_pem

UNITS = {"": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """``1GiB``, ``256MiB``, ``512m``, ``1073741824``."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 1GiB or 256MiB")
    return int(m.group(1)) * UNITS[m.group(2).lower()]


@dataclass
class Run:
    """One timed command."""

    label: str
    seconds: float
    max_rss_kib: int


def fsync_path(path: Path) -> None:
    """Flush a file (or every file in a folder) and its folder to disk."""
    targets = sorted(path.rglob("*")) if path.is_dir() else [path]
    for t in targets:
        if t.is_file():
            fd = os.open(t, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(
    label: str,
    argv: Sequence[str | Path],
    *,
    sync: Path | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``argv`` under /usr/bin/time; fsync ``sync`` afterwards inside the timing."""
    fd, name = tempfile.mkstemp(prefix="bench-rss-")
    os.close(fd)
    rss_file = Path(name)
    try:
        cmd = ["/usr/bin/time", "-q", "-f", "%M", "-o", str(rss_file), *map(str, argv)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
        if proc.returncode != 0:
            raise SystemExit(
                f"{label} failed ({proc.returncode}): {' '.join(map(str, argv))}\n"
                + proc.stderr.decode(errors="replace")[-2000:]
            )
        if sync is not None:
            fsync_path(sync)
        seconds = time.perf_counter() - start
        rss = int(rss_file.read_text().strip().splitlines()[-1] or 0)
    finally:
        rss_file.unlink(missing_ok=True)
    return Run(label, seconds, rss)


def best(runs: list[Run]) -> Run:
    """The fastest of repeated runs (peak RSS: the largest seen)."""
    fastest = min(runs, key=lambda r: r.seconds)
    return Run(fastest.label, fastest.seconds, max(r.max_rss_kib for r in runs))


def make_input(path: Path, size: int) -> None:
    """``size`` bytes of a repeated 1 MiB random block (incompressible per block)."""
    block = os.urandom(1 << 20)
    with path.open("wb") as fh:
        full, rest = divmod(size, len(block))
        for _ in range(full):
            fh.write(block)
        fh.write(block[:rest])


def make_pki(base: Path) -> dict[str, Path]:
    """A throw-away CA (no passphrase) with a sender and a recipient department."""
    ca = CertificateAuthority.init(base / "ca", "Bench CA", passphrase=None)
    files: dict[str, Path] = {"root": base / "ca" / "root.pem", "crl": base / "ca" / "crl.pem"}
    try:
        for role, code, name in (
            ("sender", "MZ000001", "Bench sender"),
            ("recipient", "RS000001", "Bench recipient"),
        ):
            issued = ca.issue(DeptCode(code), name, parse_networks(["127.0.0.1"]))
            assert issued.key is not None
            cert, key = base / f"{role}.pem", base / f"{role}.key"
            cert.write_bytes(certificate_pem(issued.chain))
            key.write_bytes(private_key_pem(issued.key, None))
            key.chmod(0o600)
            files[role] = cert
            files[f"{role}_key"] = key
        ca.crl(now=dt.datetime.now(dt.UTC))
    finally:
        ca.close()
    return files


def exchange_pki() -> list[str]:
    script = Path(sys.executable).parent / "exchange-pki"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pki.cli import main; main()"]


NULL_SEAL = """
import sys, datetime as dt
from pathlib import Path
from pki.bundle import Member, seal
from pki.keys import load_certificates, load_private_key
src, cert, key, to = map(Path, sys.argv[1:5])
with open("/dev/null", "wb") as out:
    seal([Member(src.name, src)], out, signer_key=load_private_key(key),
         signer_chain=load_certificates(cert), recipients=[load_certificates(to)[0]],
         kind="file", now=dt.datetime.now(dt.UTC))
"""


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--size", type=parse_size, default=parse_size("1GiB"), help="input size (default 1GiB)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per command; the fastest counts")
    ap.add_argument(
        "--dir", type=Path, default=None, help="work folder (default: a new temp folder)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="bench-seal-", dir=args.dir))
    env = {**os.environ, "EXCHANGE_KEY_PASSPHRASE": ""}
    try:
        src = base / "input.bin"
        print(f"work folder {base}; input {args.size / 2**20:.0f} MiB", file=sys.stderr)
        make_input(src, args.size)
        pki = make_pki(base)
        have_age = shutil.which("age") is not None and shutil.which("age-keygen") is not None
        have_openssl = shutil.which("openssl") is not None
        results: dict[str, Run] = {}

        def bench(
            key: str,
            label: str,
            argv: Sequence[str | Path],
            *,
            sync: Path | None = None,
            before: Path | None = None,
        ) -> None:
            runs = []
            for _ in range(args.repeat):
                if before is not None:
                    shutil.rmtree(before, ignore_errors=True) if before.is_dir() else before.unlink(
                        missing_ok=True
                    )
                runs.append(timed(label, argv, sync=sync, env=env))
            results[key] = best(runs)
            r = results[key]
            print(f"  {label:<40} {r.seconds:7.2f} s", file=sys.stderr)

        bundle, opened = base / "input.bundle", base / "opened"
        tool = exchange_pki()
        bench(
            "seal",
            "ours: exchange-pki bundle seal",
            [
                *tool,
                "bundle",
                "seal",
                "--cert",
                pki["sender"],
                "--key",
                pki["sender_key"],
                "--to",
                pki["recipient"],
                "--out",
                bundle,
                "--force",
                src,
            ],
        )
        bench(
            "open",
            "ours: exchange-pki bundle open",
            [
                *tool,
                "bundle",
                "open",
                "--cert",
                pki["recipient"],
                "--key",
                pki["recipient_key"],
                "--trust",
                pki["root"],
                "--crl",
                pki["crl"],
                "--out",
                opened,
                bundle,
            ],
            before=opened,
        )
        bench(
            "seal_null",
            "ours: seal -> /dev/null",
            [
                sys.executable,
                "-c",
                NULL_SEAL,
                src,
                pki["sender"],
                pki["sender_key"],
                pki["recipient"],
            ],
        )

        if have_age:
            ident = base / "age-identity.txt"
            subprocess.run(["age-keygen", "-o", str(ident)], check=True, capture_output=True)
            recipient = subprocess.run(
                ["age-keygen", "-y", str(ident)], check=True, capture_output=True, text=True
            ).stdout.strip()
            enc, dec = base / "input.age", base / "input.age.out"
            bench(
                "age_enc", "age -e", ["age", "-r", recipient, "-o", enc, src], sync=enc, before=enc
            )
            bench(
                "age_dec",
                "age -d",
                ["age", "-d", "-i", ident, "-o", dec, enc],
                sync=dec,
                before=dec,
            )
            bench(
                "age_enc_null",
                "age -e -> /dev/null",
                ["age", "-r", recipient, "-o", "/dev/null", src],
            )
        else:
            print("  age not found: apt-get install age", file=sys.stderr)

        if have_openssl:
            signed, encrypted = base / "input.p7s", base / "input.p7e"
            # openssl cms has no -CRLfile: the CRL goes into the CAfile with the root.
            root_and_crl = base / "root+crl.pem"
            root_and_crl.write_bytes(pki["root"].read_bytes() + pki["crl"].read_bytes())
            decrypted, verified = base / "input.p7d", base / "input.cms.out"
            bench(
                "cms_sign",
                "openssl cms -sign",
                [
                    "openssl",
                    "cms",
                    "-sign",
                    "-binary",
                    "-stream",
                    "-nodetach",
                    "-md",
                    "sha256",
                    "-in",
                    src,
                    "-signer",
                    pki["sender"],
                    "-inkey",
                    pki["sender_key"],
                    "-outform",
                    "DER",
                    "-out",
                    signed,
                ],
                sync=signed,
                before=signed,
            )
            bench(
                "cms_encrypt",
                "openssl cms -encrypt",
                [
                    "openssl",
                    "cms",
                    "-encrypt",
                    "-binary",
                    "-stream",
                    "-aes-256-cbc",
                    "-in",
                    signed,
                    "-outform",
                    "DER",
                    "-out",
                    encrypted,
                    pki["recipient"],
                ],
                sync=encrypted,
                before=encrypted,
            )
            bench(
                "cms_decrypt",
                "openssl cms -decrypt",
                [
                    "openssl",
                    "cms",
                    "-decrypt",
                    "-binary",
                    "-inform",
                    "DER",
                    "-in",
                    encrypted,
                    "-recip",
                    pki["recipient"],
                    "-inkey",
                    pki["recipient_key"],
                    "-out",
                    decrypted,
                ],
                sync=decrypted,
                before=decrypted,
            )
            bench(
                "cms_verify",
                "openssl cms -verify",
                [
                    "openssl",
                    "cms",
                    "-verify",
                    "-binary",
                    "-inform",
                    "DER",
                    "-in",
                    decrypted,
                    "-CAfile",
                    root_and_crl,
                    "-crl_check",
                    "-out",
                    verified,
                ],
                sync=verified,
                before=verified,
            )
            bench(
                "cms_sign_null",
                "openssl cms -sign -> /dev/null",
                [
                    "openssl",
                    "cms",
                    "-sign",
                    "-binary",
                    "-stream",
                    "-nodetach",
                    "-md",
                    "sha256",
                    "-in",
                    src,
                    "-signer",
                    pki["sender"],
                    "-inkey",
                    pki["sender_key"],
                    "-outform",
                    "DER",
                    "-out",
                    "/dev/null",
                ],
            )
            bench(
                "cms_encrypt_null",
                "openssl cms -encrypt -> /dev/null",
                [
                    "openssl",
                    "cms",
                    "-encrypt",
                    "-binary",
                    "-stream",
                    "-aes-256-cbc",
                    "-in",
                    signed,
                    "-outform",
                    "DER",
                    "-out",
                    "/dev/null",
                    pki["recipient"],
                ],
            )
        else:
            print("  openssl not found", file=sys.stderr)

        report(results, args.size)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def report(results: dict[str, Run], size: int) -> None:
    """Print the throughput table and the ratios."""
    mb = size / 1e6

    def rate(*keys: str) -> float | None:
        if not all(k in results for k in keys):
            return None
        return mb / sum(results[k].seconds for k in keys)

    rows = [
        ("ours seal (sign+encrypt)", ("seal",), "file+fsync"),
        ("ours open (verify+decrypt)", ("open",), "file+fsync"),
        ("age encrypt", ("age_enc",), "file+fsync"),
        ("age decrypt", ("age_dec",), "file+fsync"),
        ("openssl cms sign", ("cms_sign",), "file+fsync"),
        ("openssl cms encrypt", ("cms_encrypt",), "file+fsync"),
        ("openssl cms sign+encrypt", ("cms_sign", "cms_encrypt"), "file+fsync"),
        ("openssl cms decrypt", ("cms_decrypt",), "file+fsync"),
        ("openssl cms verify", ("cms_verify",), "file+fsync"),
        ("openssl cms decrypt+verify", ("cms_decrypt", "cms_verify"), "file+fsync"),
        ("ours seal (sign+encrypt)", ("seal_null",), "/dev/null"),
        ("age encrypt", ("age_enc_null",), "/dev/null"),
        ("openssl cms sign+encrypt", ("cms_sign_null", "cms_encrypt_null"), "/dev/null"),
    ]
    print(f"\ninput {size / 2**20:.0f} MiB ({mb:.0f} MB); throughput = input MB / wall seconds\n")
    print(f"{'operation':<30} {'sink':<11} {'seconds':>8} {'MB/s':>8} {'peak RSS':>10}")
    print("-" * 71)
    for label, keys, sink in rows:
        r = rate(*keys)
        if r is None:
            continue
        secs = sum(results[k].seconds for k in keys)
        rss = max(results[k].max_rss_kib for k in keys) / 1024
        print(f"{label:<30} {sink:<11} {secs:8.2f} {r:8.0f} {rss:8.0f} MiB")

    ratios = [
        ("ours seal / age encrypt", ("seal",), ("age_enc",)),
        ("ours open / age decrypt", ("open",), ("age_dec",)),
        ("ours seal / cms sign+encrypt", ("seal",), ("cms_sign", "cms_encrypt")),
        ("ours open / cms decrypt+verify", ("open",), ("cms_decrypt", "cms_verify")),
        ("ours seal / age encrypt (/dev/null)", ("seal_null",), ("age_enc_null",)),
        (
            "ours seal / cms sign+encrypt (/dev/null)",
            ("seal_null",),
            ("cms_sign_null", "cms_encrypt_null"),
        ),
    ]
    print("\nratios (throughput, >1 = ours faster)")
    for label, ours, theirs in ratios:
        a, b = rate(*ours), rate(*theirs)
        if a is not None and b is not None:
            print(f"  {label:<42} {a / b:5.2f}x")
    goal = rate("seal_null"), rate("age_enc_null")
    if goal[0] is not None and goal[1] is not None:
        verdict = "met" if goal[0] >= 2 * goal[1] else "NOT met"
        print(f"\ngoal 'seal >= 2x age encrypt-only throughput' (CPU, /dev/null): {verdict}")


if __name__ == "__main__":
    main()
