"""Host-key pinning: trust on first use, refuse a change, OpenSSH file format."""

from __future__ import annotations

import asyncssh
import pytest

from exchange_client.hostkeys import (
    HostKeyDecision,
    add_pin,
    decide,
    host_key_changed,
    host_pattern,
    key_fingerprint,
    pinned_keys,
)

KEY_A = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
KEY_B = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def test_host_pattern_like_openssh() -> None:
    assert host_pattern("Node.Example", 22) == "node.example"
    assert host_pattern("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_first_use_is_new_then_trusted() -> None:
    assert decide([], KEY_A) is HostKeyDecision.NEW
    text = add_pin("", "127.0.0.1", 2222, KEY_A)
    pins = pinned_keys(text, "127.0.0.1", 2222)
    assert decide(pins, KEY_A) is HostKeyDecision.TRUSTED


def test_changed_key_is_refused() -> None:
    """The attack: another machine answers at the pinned address."""
    text = add_pin("", "127.0.0.1", 2222, KEY_A)
    assert decide(pinned_keys(text, "127.0.0.1", 2222), KEY_B) is HostKeyDecision.CHANGED


def test_pins_are_per_host_and_port() -> None:
    text = add_pin("", "127.0.0.1", 2222, KEY_A)
    assert pinned_keys(text, "127.0.0.1", 2223) == []
    assert pinned_keys(text, "127.0.0.2", 2222) == []


def test_add_pin_idempotent_and_keeps_other_lines() -> None:
    other = "[10.0.0.1]:22 ssh-ed25519 AAAA\n"
    text = add_pin(other, "127.0.0.1", 2222, KEY_A)
    assert text.startswith(other)
    assert add_pin(text, "127.0.0.1", 2222, KEY_A) == text


def test_file_is_openssh_format() -> None:
    line = add_pin("", "127.0.0.1", 2222, KEY_A).strip()
    parts = line.split()
    assert parts[0] == "[127.0.0.1]:2222" and parts[1] == "ssh-ed25519"
    # asyncssh (like OpenSSH) reads it back and matches the key.
    known = asyncssh.import_known_hosts(line + "\n")
    keys = known.match("127.0.0.1", "127.0.0.1", 2222)[0]
    assert {k.export_public_key().decode().split()[1] for k in keys} == {KEY_A.split()[1]}


def test_comments_markers_and_hashed_entries_ignored() -> None:
    text = "# comment\n@revoked [127.0.0.1]:2222 " + KEY_B + "\n|1|abc|def " + KEY_B + "\n"
    assert pinned_keys(text, "127.0.0.1", 2222) == []


def test_error_is_transport_exit_5_with_fingerprint() -> None:
    err = host_key_changed("127.0.0.1", 2222, KEY_B, "/d/known_hosts")
    assert err.code == "E_HOST_KEY" and err.exit_code == 5
    assert key_fingerprint(KEY_B) in err.message and "/d/known_hosts" in err.message


@pytest.mark.parametrize("bad", ["", "onlyonefield", "ssh-ed25519 !!!notbase64"])
def test_fingerprint_of_garbage(bad: str) -> None:
    assert key_fingerprint(bad) == "SHA256:?"
