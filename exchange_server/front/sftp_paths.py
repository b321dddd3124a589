"""The pure part of the SFTP front: client path normalisation, classification and name checks.

No I/O. :func:`normalise` turns any client path into a canonical absolute one lexically (no
filesystem lookups, so symlinks and ``..`` can never escape); :func:`resolve` classifies it into
one place of the virtual tree (:class:`VKind`); :func:`name_problem` says why a peer-supplied
file name is refused (length, path separators, dot-files, invisible or control characters), or
``None``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "VKind",
    "VPath",
    "name_problem",
    "normalise",
    "resolve",
]


#: Longest file name a department may upload or see (bytes of UTF-8), as in most filesystems.
MAX_NAME_BYTES = 255


#: Longest path a client may send; anything longer names nothing.
MAX_PATH_BYTES = 4096


INBOX = "inbox"


OUTBOX = "outbox"


class VKind(Enum):
    """The places of the virtual tree."""

    ROOT = "root"
    INBOX = "inbox"
    OUTBOX = "outbox"
    INBOX_FILE = "inbox-file"
    OUTBOX_FILE = "outbox-file"
    NOWHERE = "nowhere"


@dataclass(frozen=True)
class VPath:
    """A client path, normalised (``path``) and classified (``kind``, ``name``)."""

    kind: VKind
    path: str
    name: str | None = None


_NOWHERE = VPath(VKind.NOWHERE, "")


# Unicode categories refused in names: controls (Cc), invisible format characters such as the
# right-to-left override used to disguise file extensions (Cf), surrogates (Cs), private use
# (Co), unassigned code points (Cn) and line/paragraph separators (Zl, Zp).
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def name_problem(name: str) -> str | None:
    """Why ``name`` is not acceptable as a file name in the virtual tree, or ``None`` if it is.

    Every name a peer supplies is hostile (STYLE 8): no separators (``/``, ``\\``), no ``.`` or
    ``..``, no leading dot (hidden files and the node's own ``.partial``), no control or
    invisible characters, at most :data:`MAX_NAME_BYTES` bytes of UTF-8, no surrounding spaces.
    """
    if not name:
        return "empty name"
    if name in {".", ".."}:
        return "relative name"
    if name.startswith("."):
        return "name starts with a dot"
    if "/" in name or "\\" in name:
        return "name contains a path separator"
    if name != name.strip():
        return "name starts or ends with white space"
    for ch in name:
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            return f"name contains a control or invisible character (U+{ord(ch):04X})"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "name is not valid Unicode"
    if size > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def normalise(path: bytes | str) -> str | None:
    """The virtual absolute path ``path`` denotes, or ``None`` if it denotes nothing at all.

    Lexical, like a chroot: relative paths start at ``/``, ``.`` and empty segments vanish and
    ``..`` never climbs above ``/``. The result always starts with ``/`` and holds no ``.``,
    ``..`` or empty segment, so no output can name anything outside the virtual tree. Paths
    that are not UTF-8, hold NUL or control characters, or exceed :data:`MAX_PATH_BYTES` give
    ``None``.
    """
    if isinstance(path, bytes):
        if len(path) > MAX_PATH_BYTES:
            return None
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            return None
    else:
        text = path
        try:
            if len(text.encode("utf-8")) > MAX_PATH_BYTES:
                return None
        except UnicodeEncodeError:
            return None
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return None
    parts: list[str] = []
    for seg in text.split("/"):
        if seg in {"", "."}:
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def resolve(path: bytes | str) -> VPath:
    """Classify a client path; anything that is not one of the virtual places is NOWHERE."""
    norm = normalise(path)
    if norm is None:
        return _NOWHERE
    parts = [p for p in norm.split("/") if p]
    if not parts:
        return VPath(VKind.ROOT, norm)
    if len(parts) == 1 and parts[0] in {INBOX, OUTBOX}:
        return VPath(VKind.INBOX if parts[0] == INBOX else VKind.OUTBOX, norm)
    if len(parts) == 2 and parts[0] in {INBOX, OUTBOX} and name_problem(parts[1]) is None:
        kind = VKind.INBOX_FILE if parts[0] == INBOX else VKind.OUTBOX_FILE
        return VPath(kind, norm, parts[1])
    return VPath(VKind.NOWHERE, norm)
