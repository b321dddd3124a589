"""Masking of personal data for logs, reports and status output (shared by node and client)."""

from __future__ import annotations

import re

__all__ = ["mask_id", "mask_id_numbers", "mask_name", "mask_text", "peer_token"]

_ID_RUN = re.compile(r"\d{6,}[0-9Xx]*")
#: A GB 11643 number standing on its own (18 characters, or the old 15 digits): not a part of a
#: longer token such as a UUID or a department code.
_ID_TOKEN = re.compile(r"(?<![0-9A-Za-z-])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z-])")
#: What a peer's text may look like to be echoed: a code, a date, a mode (ASCII, short).
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,47}")


def mask_id(value: str) -> str:
    """Hide the birth date and sequence: ``330102199001011234`` -> ``330102********1234``.

    Values too short to keep 6 + 4 characters safely are masked completely.
    """
    text = value.strip()
    if len(text) < 15:
        return "*" * len(text)
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def mask_name(value: str) -> str:
    """Keep the first character only: ``张三丰`` -> ``张**``; a one-character name -> ``*``."""
    text = value.strip()
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)


def mask_text(text: str) -> str:
    """Replace every run of six or more digits (an ID number, a phone) in free text by ``***``."""
    return _ID_RUN.sub("***", text)


def mask_id_numbers(text: str) -> str:
    """Mask every ID number standing on its own in ``text`` with :func:`mask_id`, leaving codes
    and identifiers the node made (``MZ330100``, bundle ids) readable: for output of values the
    node wrote itself, such as its audit trail. Text from a peer takes :func:`mask_text`."""
    return _ID_TOKEN.sub(lambda m: mask_id(m.group(0)), text)


def peer_token(value: object) -> str:
    """A value a peer sent, fit for a receipt, a log line or the state store: quoted as given
    when it looks like a code, a date or a mode (short ASCII without a run of six digits),
    otherwise only its length (``<5 characters, not shown>``): a header, a resource code or a
    time range may hold a person's name or ID number, and none may leave the node's control
    unmasked."""
    text = value if isinstance(value, str) else str(value)
    if _TOKEN.fullmatch(text) and mask_text(text) == text:
        return repr(text)
    return f"<{len(text)} characters, not shown>"
