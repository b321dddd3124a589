"""The registry of reason codes: every code a peer or an operator can see, in one place.

A reason code (``E_SIGNATURE``, ``ID_CHECKSUM``, ...) is stable: receipts, logs, the audit
trail and scripts depend on its spelling. The registry gives each code

- a :class:`Category` (who is at fault, which decides the reaction and the exit code),
- a *peer text*: one short English sentence that is safe to send to another party (no
  personal data, no internals; a peer learns "what", never "why exactly"),
- an *operator hint*: what the local operator should check or do.

Exit codes follow the CLIs' convention (:data:`exchange_common.cli.EXIT_CODES_HELP`):
1 peer input (verification failed), 3 local input, 4 CA state, 5 transport, 6 store. A node
fault (a bug or a broken environment inside the node, e.g. ``E_INTERNAL``) exits 1 too: it is
the exit code of the base :class:`~exchange_common.errors.ExchangeError`, and a script can
only retry or report either way.

Unknown codes are not an error at run time (a node must not crash over a missing text):
:func:`lookup` returns ``None`` for them. A test scans the source tree so that every code
raised anywhere is registered. ``docs/reason-codes.md`` is generated from this module::

    python -m exchange_common.codes --markdown > docs/reason-codes.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from exchange_common._codes_table import MIXED_CLASSES, TABLE

__all__ = [
    "EXIT_CODES",
    "GENERIC_PEER_TEXT",
    "MIXED_CLASSES",
    "REGISTRY",
    "Category",
    "Reason",
    "lookup",
    "main",
    "peer_text",
    "reason",
    "registered_text",
    "render_markdown",
]


class Category(StrEnum):
    """Who is at fault for a failure: the reaction (and exit code) differs."""

    PEER_INPUT = "peer input"  # bad bundle, certificate or data from another party
    LOCAL_INPUT = "local input"  # the operator's own input (files, options, configuration)
    CA_STATE = "CA state"  # the certificate authority's state forbids the operation
    TRANSPORT = "transport"  # network, SSH, the remote end
    STORE = "store"  # the state store, the audit trail, the client state file
    NODE_FAULT = "node fault"  # a fault inside the node itself (software or environment)


#: Process exit code for each category (see the module docstring for node faults).
EXIT_CODES: Mapping[Category, int] = MappingProxyType(
    {
        Category.PEER_INPUT: 1,
        Category.LOCAL_INPUT: 3,
        Category.CA_STATE: 4,
        Category.TRANSPORT: 5,
        Category.STORE: 6,
        Category.NODE_FAULT: 1,
    }
)

#: What a peer is told for a code the registry does not know.
GENERIC_PEER_TEXT = "The request could not be processed."


@dataclass(frozen=True)
class Reason:
    """One registry entry: a code with its category and texts."""

    code: str
    category: Category
    peer_text: str
    operator_hint: str

    @property
    def exit_code(self) -> int:
        """The CLI exit code of this code's category."""
        return EXIT_CODES[self.category]


def _build(rows: Sequence[tuple[str, str, str, str]]) -> Mapping[str, Reason]:
    entries: dict[str, Reason] = {}
    for code, category, text, hint in rows:
        if code in entries:
            raise ValueError(f"reason code {code} is registered twice")
        entries[code] = Reason(code, Category(category), text, hint)
    return MappingProxyType(entries)


#: Every registered code, in table order.
REGISTRY: Mapping[str, Reason] = _build(TABLE)


def reason(code: str) -> Reason:
    """The registry entry for ``code``.

    Raises :class:`KeyError` when ``code`` is not registered.
    """
    try:
        return REGISTRY[code]
    except KeyError:
        raise KeyError(f"unregistered reason code {code!r}") from None


def lookup(code: str | None) -> Reason | None:
    """The registry entry for ``code``, or ``None`` when it is absent or unregistered.

    Never raises: for run-time paths (CLIs, receipts) that must not fail over a missing text.
    """
    return REGISTRY.get(code) if code else None


def registered_text(code: str | None) -> str | None:
    """The registry's peer text for ``code``, or ``None`` for no code or an unregistered one.

    Never raises: what receipts and CLIs show beside a code.
    """
    entry = lookup(code)
    return entry.peer_text if entry is not None else None


def peer_text(code: str) -> str:
    """The sentence that may be sent to a peer for ``code``.

    Raises :class:`KeyError` when ``code`` is not registered.
    """
    return reason(code).peer_text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown() -> str:
    """``docs/reason-codes.md``: one table per category, codes sorted, ending in a newline.

    Deterministic: the same registry always renders the same text.
    """
    lines = [
        "# Reason codes",
        "",
        "<!-- Generated by `python -m exchange_common.codes --markdown > docs/reason-codes.md`;",
        "     edit exchange_common/_codes_table.py, not this file. -->",
        "",
        "Every reason code a peer or an operator can see. The *peer text* is what another",
        "party may be told; the *operator hint* is for the local operator. The CLIs print",
        "`error: <message> (<code>)` and, for a registered code, a `hint:` line.",
        "",
        "| category | exit code |",
        "| --- | --- |",
    ]
    lines += [f"| {c.value} | {EXIT_CODES[c]} |" for c in Category]
    lines += [
        "",
        "Exit code 1 covers both failed verification (peer input) and faults inside the node.",
        "A few codes are raised with more than one error class; the CLI then exits with the",
        "class's code (listed at the end).",
    ]
    for category in Category:
        entries = sorted(
            (r for r in REGISTRY.values() if r.category is category), key=lambda r: r.code
        )
        if not entries:
            continue
        lines += [
            "",
            f"## {category.value[:1].upper()}{category.value[1:]}",
            "",
            "| code | peer text | operator hint | exit code |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{r.code}` | {_cell(r.peer_text)} | {_cell(r.operator_hint)} | {r.exit_code} |"
            for r in entries
        ]
    lines += ["", "## Codes raised with more than one error class", ""]
    lines += [f"- `{code}`: also {_cell(why)}." for code, why in sorted(MIXED_CLASSES.items())]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m exchange_common.codes``: print the registry (``--markdown``) or one code."""
    parser = argparse.ArgumentParser(
        prog="python -m exchange_common.codes", description="The reason-code registry."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print docs/reason-codes.md")
    group.add_argument("--code", help="print one code's entry")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    entry = lookup(args.code)
    if entry is None:
        sys.stderr.write(f"error: unregistered reason code {args.code!r}\n")
        return 3
    sys.stdout.write(
        f"{entry.code} ({entry.category.value}, exit {entry.exit_code})\n"
        f"  peer text: {entry.peer_text}\n  hint: {entry.operator_hint}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
