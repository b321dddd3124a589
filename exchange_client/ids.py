"""Bundle ids on the command line: a whole id, or the beginning of one this directory knows.

An operator copies ids from ``status`` and ``pull``; typing the first characters is enough when
they name one bundle, as with git's abbreviated commits. Only ids the local state records
are candidates (nothing is asked of the node), and a beginning shared by several ids is a usage
error that lists them: the client never guesses which bundle was meant.
"""

from __future__ import annotations

from collections.abc import Iterable

import typer

__all__ = ["MAX_CANDIDATES", "resolve_id"]

#: An ambiguous beginning lists at most this many candidates (all are counted).
MAX_CANDIDATES = 10


def resolve_id(text: str, known: Iterable[str], *, what: str, param: str) -> str | None:
    """The one id among ``known`` that ``text`` names: the id itself, or the only one that
    begins with it (ignoring case and surrounding spaces). None when no id matches.

    ``what`` names the candidates in messages, in the plural ("bundles pushed from DIR"),
    ``param`` the argument or option (``BUNDLE_ID``, ``--to-query``). Raises
    :class:`typer.BadParameter`, which the CLI reports as a usage error (exit 2), when ``text``
    is empty or begins several ids; the message lists them (at most :data:`MAX_CANDIDATES`).
    """
    wanted = text.strip().lower()
    if not wanted:
        raise typer.BadParameter("an empty id names nothing", param_hint=param)
    by_lower = {i.lower(): i for i in known}
    if wanted in by_lower:
        return by_lower[wanted]
    matches = sorted(i for low, i in by_lower.items() if low.startswith(wanted))
    if len(matches) > 1:
        shown = ", ".join(matches[:MAX_CANDIDATES])
        more = f" and {len(matches) - MAX_CANDIDATES} more" if len(matches) > MAX_CANDIDATES else ""
        raise typer.BadParameter(
            f"{text.strip()!r} begins {len(matches)} {what}: {shown}{more}; give more characters",
            param_hint=param,
        )
    return matches[0] if matches else None
