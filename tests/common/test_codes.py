"""The reason-code registry is complete, has no dead entries, and its texts are fit to show.

The source scan is what keeps the registry honest: a code raised anywhere in the packages and
missing from the registry fails here (at run time an unregistered code still works, because
a node must not crash over a missing text).
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange_common import codes
from exchange_common.codes import (
    EXIT_CODES,
    GENERIC_PEER_TEXT,
    MIXED_CLASSES,
    REGISTRY,
    Category,
    lookup,
    peer_text,
    reason,
    render_markdown,
)
from exchange_common.errors import (
    CAError,
    CertificateError,
    ExchangeError,
    InputError,
    PeerError,
    StoreError,
    TransportError,
)
from exchange_common.idnumber import IdNumberError, normalize_id
from pki._bundle_format import BundleError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("exchange_common", "pki", "exchange_server", "exchange_client")
CODE = re.compile(r"^(E|ID)_[A-Z0-9_]+$")
#: A code used as the prefix of a row-level reason (``E_REQUIRED:<item>`` in datasets.py).
CODE_PREFIX = re.compile(r"^((?:E|ID)_[A-Z0-9_]+):")
DOC = ROOT / "docs" / "reason-codes.md"
REGENERATE = "python -m exchange_common.codes --markdown > docs/reason-codes.md"

#: Exit code of each error class (or error-building helper) a code is raised with.
RAISERS: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        ExchangeError,
        PeerError,
        CertificateError,
        BundleError,
        InputError,
        CAError,
        TransportError,
        StoreError,
        IdNumberError,
    )
} | {
    "reject": BundleError.exit_code,  # pki._bundle_format.reject builds a BundleError
    "_Reject": ExchangeError.exit_code,  # ingest's node-level refusal
    "Refusal": ExchangeError.exit_code,  # the formal review's refusal
}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _ignored(tree: ast.Module) -> set[int]:
    """ids of string constants that are not reason codes: docstrings and ``__all__`` lists."""
    ignored: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ignored.add(id(node.value))  # docstrings and other bare string statements
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = getattr(node, "value", None)
            if value is not None:
                ignored |= {id(n) for n in ast.walk(value)}
    return ignored


def _literals() -> dict[str, list[str]]:
    """Every string constant of the packages (docstrings and ``__all__`` excepted) -> sites."""
    found: dict[str, list[str]] = {}
    for path, tree in _sources():
        if path.name.startswith("_codes"):
            continue  # the registry's own rows are not uses: a dead entry must show as dead
        ignored = _ignored(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in ignored
            ):
                site = f"{path.relative_to(ROOT)}:{node.lineno}"
                found.setdefault(node.value, []).append(site)
    return found


@pytest.fixture(scope="module")
def literals() -> dict[str, list[str]]:
    return _literals()


def test_every_code_in_the_source_is_registered(literals: dict[str, list[str]]) -> None:
    used = {text: sites for text, sites in literals.items() if CODE.match(text)}
    assert len(used) > 100  # the scan sees the tree (guards against a broken walk)
    missing = [
        f"{code} (at {', '.join(used[code][:3])})" for code in sorted(used) if code not in REGISTRY
    ]
    assert not missing, (
        "reason codes used in the source but missing from exchange_common/_codes_table.py:\n"
        + "\n".join(missing)
    )


def test_no_dead_entries(literals: dict[str, list[str]]) -> None:
    used = {text for text in literals if CODE.match(text)}
    used |= {m.group(1) for text in literals if (m := CODE_PREFIX.match(text))}
    dead = sorted(set(REGISTRY) - used)
    assert not dead, f"registry entries no code in the packages uses: {dead}"


def test_registry_exit_codes_match_the_raising_classes() -> None:
    """A CLI exits with the raised class's code: the registry must name the same one.

    The few codes raised with classes of different exit codes are listed, with the reason, in
    ``MIXED_CLASSES``; each listed code must really be mixed (the list cannot go stale).
    """
    seen: dict[str, set[int]] = {}
    for _path, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in RAISERS:
                continue
            values = [k.value for k in node.keywords if k.arg == "code"]
            if name in ("reject", "_Reject", "Refusal", "IdNumberError") and node.args:
                values.append(node.args[0])
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    seen.setdefault(value.value, set()).add(RAISERS[name])
    wrong = {
        code: sorted(exits)
        for code, exits in seen.items()
        if code not in MIXED_CLASSES and exits != {reason(code).exit_code}
    }
    assert not wrong, f"registry exit code differs from the raising classes: {wrong}"
    stale = sorted(c for c in MIXED_CLASSES if seen.get(c, set()) <= {reason(c).exit_code})
    assert not stale, f"MIXED_CLASSES lists codes that are not mixed: {stale}"


@pytest.mark.parametrize("code", sorted(REGISTRY))
def test_entry_is_complete(code: str) -> None:
    entry = REGISTRY[code]
    assert entry.code == code
    assert CODE.match(code)
    assert isinstance(entry.category, Category)
    assert entry.exit_code == EXIT_CODES[entry.category]
    assert entry.exit_code in {1, 3, 4, 5, 6}  # the CLIs' documented exit codes
    assert entry.operator_hint.strip() and entry.operator_hint == entry.operator_hint.strip()
    text = entry.peer_text
    assert text.strip() == text and text[:1].isupper() and text.endswith(".")
    assert len(text) <= 90, "a peer text is one short sentence"
    assert text.count(". ") == 0, "a peer text is one sentence"


@pytest.mark.parametrize("code", sorted(REGISTRY))
def test_peer_text_tells_a_peer_nothing_internal(code: str) -> None:
    """Peer texts go to other parties: no numbers (ID numbers, serials, sizes, limits), no
    paths, no placeholders, no other code."""
    text = REGISTRY[code].peer_text
    assert not re.search(r"\d", text), text
    assert not re.search(r"[/\\{}<>`]|\.py\b|\.toml\b", text), text
    assert not re.search(r"\b(E|ID)_[A-Z]", text), text


def test_lookup_functions() -> None:
    assert reason("E_SIGNATURE").category is Category.PEER_INPUT
    assert peer_text("E_SIGNATURE") == "The bundle signature is invalid."
    assert lookup("E_SIGNATURE") is REGISTRY["E_SIGNATURE"]
    assert lookup("E_NO_SUCH_CODE") is None and lookup(None) is None
    with pytest.raises(KeyError, match="E_NO_SUCH_CODE"):
        reason("E_NO_SUCH_CODE")
    with pytest.raises(KeyError):
        peer_text("E_NO_SUCH_CODE")
    with pytest.raises(AttributeError):  # frozen
        REGISTRY["E_SIGNATURE"].peer_text = "x"  # type: ignore[misc]


def test_error_carries_its_entry_and_unknown_codes_do_not_crash() -> None:
    e = PeerError("bundle rejected: signature invalid", code="E_SIGNATURE", detail="sig len 3")
    assert e.registry_entry is REGISTRY["E_SIGNATURE"]
    assert e.peer_text == "The bundle signature is invalid."
    assert str(e) == "bundle rejected: signature invalid (E_SIGNATURE)"
    unknown = InputError("odd", code="E_NOT_REGISTERED")  # a node must not crash over this
    assert unknown.registry_entry is None
    assert unknown.peer_text == GENERIC_PEER_TEXT
    assert str(unknown) == "odd (E_NOT_REGISTERED)"
    assert ExchangeError("x").registry_entry is REGISTRY["E_INTERNAL"]


def test_id_number_errors_are_input_errors() -> None:
    with pytest.raises(IdNumberError) as info:
        normalize_id("11010519491231002", today=dt.date(2026, 12, 2))  # 17 characters
    e = info.value
    assert isinstance(e, InputError) and isinstance(e, ValueError)
    assert e.code == "ID_LENGTH" and e.exit_code == 3
    assert e.registry_entry is REGISTRY["ID_LENGTH"]
    assert str(e) == "an ID number has 18 characters (or 15), not 17 (ID_LENGTH)"  # code once


def test_committed_doc_matches_the_registry() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        f"{DOC.relative_to(ROOT)} is out of date; regenerate it with: {REGENERATE}"
    )


def test_markdown_lists_every_code_once() -> None:
    text = render_markdown()
    for code in REGISTRY:
        assert text.count(f"| `{code}` |") == 1, code


def test_module_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert codes.main(["--markdown"]) == 0
    assert capsys.readouterr().out == render_markdown()
    assert codes.main(["--code", "ID_CHECKSUM"]) == 0
    assert "ID_CHECKSUM (local input, exit 3)" in capsys.readouterr().out
    assert codes.main(["--code", "E_NOPE"]) == 3
