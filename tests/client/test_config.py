"""Client configuration: round trip, relative paths, and refusal of broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange_client.config import ClientConfig, load_config, render_config, save_config
from exchange_common.errors import InputError
from pki.identity import DeptCode


def make(tmp_path: Path, **kw: object) -> ClientConfig:
    base = dict(
        dir=tmp_path.absolute(),
        dept=DeptCode("MZ330100"),
        node_host="node.example.gov.cn",
        node_port=2222,
        node_fingerprint="ab" * 32,
        node_cert=tmp_path.absolute() / "node.pem",
        trust=Path("/etc/exchange/root.pem"),
        cert=tmp_path.absolute() / "MZ330100.pem",
        key=tmp_path.absolute() / "MZ330100.key",
    )
    base.update(kw)
    return ClientConfig(**base)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    cfg = make(tmp_path, crl=Path("/etc/exchange/crl.pem"), login="ssh-key", ssh_key=Path("/k/id"))
    save_config(cfg)
    assert load_config(tmp_path) == cfg
    assert (tmp_path / "client.toml").stat().st_mode & 0o777 == 0o600


def test_paths_inside_dir_are_stored_relative(tmp_path: Path) -> None:
    text = render_config(make(tmp_path))
    assert 'certificate = "node.pem"' in text and 'key = "MZ330100.key"' in text
    assert '"/etc/exchange/root.pem"' in text


def test_no_certificate_yet_round_trips(tmp_path: Path) -> None:
    cfg = make(tmp_path, cert=None)
    save_config(cfg)
    assert load_config(tmp_path).cert is None


def test_chinese_and_quotes_survive(tmp_path: Path) -> None:
    odd = tmp_path.absolute() / '证书 "民政".pem'
    cfg = make(tmp_path, cert=odd)
    save_config(cfg)
    assert load_config(tmp_path).cert == odd


def test_missing_config_names_init(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="exchange-client init") as e:
        load_config(tmp_path)
    assert e.value.code == "E_CONFIG"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("port = 2222", "port = 70000"),
        ("port = 2222", 'port = "2222"'),
        ('fingerprint = "abab', 'fingerprint = "zz'),
        ('method = "x509"', 'method = "password"'),
        ('dept = "MZ330100"', 'dept = "../etc"'),
        ("version = 1", "version = 2"),
    ],
)
def test_broken_values_refused(tmp_path: Path, old: str, new: str) -> None:
    save_config(make(tmp_path))
    path = tmp_path / "client.toml"
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(InputError) as e:
        load_config(tmp_path)
    assert e.value.code == "E_CONFIG"


def test_not_toml_refused(tmp_path: Path) -> None:
    (tmp_path / "client.toml").write_text("this is [not toml")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(tmp_path)


def test_ssh_login_needs_key(tmp_path: Path) -> None:
    save_config(make(tmp_path))
    path = tmp_path / "client.toml"
    path.write_text(path.read_text().replace('method = "x509"', 'method = "ssh-key"'))
    with pytest.raises(InputError, match="ssh_key"):
        load_config(tmp_path)
