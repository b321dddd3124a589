"""Stock OpenSSL checks a bundle's signature and sender chain (docs/bundle-format.md §7).

The script below is the documented procedure, run verbatim with ``sh``: coreutils cut the
signed region, the signature and the certificates out of the bundle; ``openssl dgst`` checks
the signature and ``openssl verify -crl_check_all`` the chain. No Python touches the bundle.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pki.cli import app
from pki.keys import KeyType
from tests.conftest import CAFixture
from tests.pki.bundlegen import layout, make_parties, seal_bytes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed"),
]

#: The documented check. Arguments: BUNDLE ROOT.pem CRL.pem WORKDIR.
CHECK_SCRIPT = r"""
set -eu
B=$1; ROOT=$2; CRL=$3; W=$4

# 1. the footer: last 8 bytes are the magic, before them u32 S and u32 K (big-endian)
[ "$(tail -c 8 "$B")" = SAXBSIG1 ] || { echo "not a complete bundle"; exit 2; }
S=$(tail -c 16 "$B" | head -c 4 | od -An -tu4 --endian=big | tr -d ' ')
K=$(tail -c 12 "$B" | head -c 4 | od -An -tu4 --endian=big | tr -d ' ')
N=$(( $(wc -c < "$B") - 16 - S - K ))      # signed length

# 2. the pieces
tail -c $((16 + S + K)) "$B" | head -c "$S" > "$W/sig.der"
tail -c $((16 + K)) "$B" | head -c "$K" > "$W/chain.der"

# 3. split the chain: openssl reads the first DER certificate and ignores what follows
openssl x509 -inform DER -in "$W/chain.der" -out "$W/signer.pem"
L=$(openssl x509 -in "$W/signer.pem" -outform DER | wc -c)
tail -c +$((L + 1)) "$W/chain.der" > "$W/rest.der"
: > "$W/untrusted.pem"
while [ -s "$W/rest.der" ]; do
    openssl x509 -inform DER -in "$W/rest.der" >> "$W/untrusted.pem"
    L=$(openssl x509 -inform DER -in "$W/rest.der" -outform DER | wc -c)
    tail -c +$((L + 1)) "$W/rest.der" > "$W/rest.tmp" && mv "$W/rest.tmp" "$W/rest.der"
done

# 4. the signature over bytes [0, N): ECDSA, or RSA-PSS with a 32-byte salt
openssl x509 -in "$W/signer.pem" -pubkey -noout > "$W/pub.pem"
OPTS=""
if openssl x509 -in "$W/signer.pem" -noout -text | grep -q rsaEncryption; then
    OPTS="-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32"
fi
head -c "$N" "$B" | openssl dgst -sha256 $OPTS -verify "$W/pub.pem" -signature "$W/sig.der"

# 5. the sender's certificate: chain to the root, validity, revocation
if [ -s "$W/untrusted.pem" ]; then UNTRUSTED="-untrusted $W/untrusted.pem"; else UNTRUSTED=""; fi
openssl verify -CAfile "$ROOT" $UNTRUSTED -crl_check_all -CRLfile "$CRL" "$W/signer.pem"
"""


def check(bundle: Path, ca: CAFixture, work: Path) -> subprocess.CompletedProcess[str]:
    work.mkdir(exist_ok=True)
    return subprocess.run(
        ["sh", "-c", CHECK_SCRIPT, "check", bundle, ca.dir / "root.pem", ca.dir / "crl.pem", work],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("key_type", [KeyType.EC, KeyType.RSA])
def test_stock_openssl_verifies_signature_and_chain(
    inter_ca: CAFixture, tmp_path: Path, key_type: KeyType
) -> None:
    p = make_parties(inter_ca)
    sender = inter_ca.issue("CZ330100", "杭州市财政局", key_type=key_type)
    bundle = tmp_path / "b.bundle"
    bundle.write_bytes(seal_bytes(p, [("名单.csv", b"x" * 70_000)], sender=sender))
    inter_ca.trust()
    result = check(bundle, inter_ca, tmp_path / "w")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout
    assert "signer.pem: OK" in result.stdout


def test_stock_openssl_root_only_ca(test_ca: CAFixture, tmp_path: Path) -> None:
    p = make_parties(test_ca)
    bundle = tmp_path / "b.bundle"
    bundle.write_bytes(seal_bytes(p, [("a", b"")]))
    result = check(bundle, test_ca, tmp_path / "w")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout


def test_stock_openssl_rejects_a_flipped_ciphertext_byte(
    inter_ca: CAFixture, tmp_path: Path
) -> None:
    p = make_parties(inter_ca)
    data = bytearray(seal_bytes(p, [("a", b"y" * 1000)]))
    data[layout(bytes(data)).ct_start + 100] ^= 1
    bundle = tmp_path / "b.bundle"
    bundle.write_bytes(bytes(data))
    result = check(bundle, inter_ca, tmp_path / "w")
    assert result.returncode != 0
    assert "Verification failure" in result.stdout + result.stderr


def test_stock_openssl_rejects_a_revoked_sender(inter_ca: CAFixture, tmp_path: Path) -> None:
    p = make_parties(inter_ca)
    bundle = tmp_path / "b.bundle"
    bundle.write_bytes(seal_bytes(p, [("a", b"z")]))
    inter_ca.ca.revoke(serial=p.sender.record.serial)
    inter_ca.trust()
    result = check(bundle, inter_ca, tmp_path / "w")
    assert result.returncode != 0
    assert "Verified OK" in result.stdout  # the signature itself is fine
    assert "revoked" in (result.stdout + result.stderr).lower()


def test_extract_signature_commands_run_with_openssl(inter_ca: CAFixture, tmp_path: Path) -> None:
    p = make_parties(inter_ca)
    sender = inter_ca.issue("CZ330100", "杭州市财政局", key_type=KeyType.RSA)
    bundle = tmp_path / "b.bundle"
    bundle.write_bytes(seal_bytes(p, [("a", b"z" * 5000)], sender=sender))
    inter_ca.trust()
    result = CliRunner().invoke(
        app, ["bundle", "extract-signature", str(bundle), "--out", str(tmp_path / "sig")]
    )
    assert result.exit_code == 0, result.output
    commands = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(commands) == 2
    root, crl = (
        shlex.quote(str(inter_ca.dir / "root.pem")),
        shlex.quote(str(inter_ca.dir / "crl.pem")),
    )
    for command in commands:
        command = command.replace("ROOT.pem", root).replace("CRL.pem", crl)
        run = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
        assert run.returncode == 0, (command, run.stdout, run.stderr)
    env = (tmp_path / "sig" / "pieces.env").read_text()
    assert "SIGNATURE_ALG=rsa-pss-sha256" in env
