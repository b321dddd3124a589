"""Chinese citizen ID numbers (GB 11643): validate, normalise, convert, mask.

An 18-character number is ``RRRRRR YYYYMMDD SSS C``: a 6-digit region code, the birth date,
a 3-digit sequence and an ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``).

The region code is the one in force when the number was *issued*, not at birth, so most elderly
recipients carry a code created after they were born. python-stdnum's ``cn.ric.validate``
rejects exactly those (it requires the code to exist in the birth year), so it is not used
here: any 6-digit code with a valid province-level prefix is accepted, and only stdnum's
MOD 11-2 checksum is borrowed.

15-digit first-generation numbers (``RRRRRR YYMMDD SSS``, all born in the 1900s) are converted:
``19`` is inserted before the year and the check character appended.

Failures raise :class:`IdNumberError` (a :class:`ValueError`) whose ``code`` is one of
``ID_LENGTH``, ``ID_CHARS``, ``ID_CHECKSUM``, ``ID_DATE``, ``ID_REGION``. Messages never
contain the number itself: use :func:`mask_id` when a value must be shown.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from stdnum.iso7064 import mod_11_2

from exchange_common.errors import InputError
from exchange_common.masking import mask_id, mask_name

__all__ = [
    "ID_CODES",
    "PROVINCE_PREFIXES",
    "IdNumberError",
    "check_character",
    "is_valid_id",
    "mask_id",
    "mask_name",
    "normalize_id",
]

#: Province-level prefixes of the region code (GB/T 2260 first two digits; 71 Taiwan,
#: 81 Hong Kong, 82 Macao, 83 residence permits for Taiwan residents, 91 residence permits
#: issued abroad / foreign permanent residents).
PROVINCE_PREFIXES = frozenset(
    {
        *(str(n) for n in range(11, 16)),
        *(str(n) for n in range(21, 24)),
        *(str(n) for n in range(31, 38)),
        *(str(n) for n in range(41, 47)),
        *(str(n) for n in range(50, 55)),
        *(str(n) for n in range(61, 66)),
        "71",
        "81",
        "82",
        "83",
        "91",
    }
)

#: Reason codes, in the order the checks run.
ID_CODES = ("ID_LENGTH", "ID_CHARS", "ID_CHECKSUM", "ID_REGION", "ID_DATE")

#: No recipient was born before this date.
EARLIEST_BIRTH = dt.date(1890, 1, 1)

_DIGITS = frozenset("0123456789")


class IdNumberError(InputError, ValueError):
    """An ID number is malformed. ``code`` is one of :data:`ID_CODES`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{reason} ({code})")
        self.code = code
        self.reason = reason


def check_character(first17: str) -> str:
    """The MOD 11-2 check character (``0``-``9`` or ``X``) for 17 digits."""
    return mod_11_2.calc_check_digit(first17)


def _check_region(number: str) -> None:
    if number[:2] not in PROVINCE_PREFIXES:
        raise IdNumberError("ID_REGION", "region code has no valid province-level prefix")


def _check_date(yyyymmdd: str, today: dt.date) -> None:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError as e:
        raise IdNumberError("ID_DATE", "birth date is not a real date") from e
    if born > today:
        raise IdNumberError("ID_DATE", "birth date is in the future")
    if born < EARLIEST_BIRTH:
        raise IdNumberError("ID_DATE", "birth date is before 1890")


def normalize_id(value: str, *, today: dt.date | None = None) -> str:
    """Return the normalised 18-character ID number or raise :class:`IdNumberError`.

    Surrounding white space is ignored; full-width digits and ``Ｘ`` are accepted (NFKC); a
    lower-case ``x`` becomes ``X``; a valid 15-digit number is converted to 18 characters.
    ``today`` (default: the local date) bounds the birth date.
    """
    today = today or dt.date.today()
    number = unicodedata.normalize("NFKC", value).strip().upper()
    if len(number) == 15:
        if not set(number) <= _DIGITS:
            raise IdNumberError("ID_CHARS", "a 15-digit ID number holds only digits")
        _check_region(number)
        _check_date("19" + number[6:12], today)
        first17 = number[:6] + "19" + number[6:]
        return first17 + check_character(first17)
    if len(number) != 18:
        raise IdNumberError(
            "ID_LENGTH", f"an ID number has 18 characters (or 15), not {len(number)}"
        )
    if not set(number[:17]) <= _DIGITS or number[17] not in _DIGITS | {"X"}:
        raise IdNumberError("ID_CHARS", "an ID number is 17 digits and a digit or X")
    if check_character(number[:17]) != number[17]:
        raise IdNumberError("ID_CHECKSUM", "check character does not match (a typing error?)")
    _check_region(number)
    _check_date(number[6:14], today)
    return number


def is_valid_id(value: str, *, today: dt.date | None = None) -> bool:
    """True when :func:`normalize_id` accepts ``value``."""
    try:
        normalize_id(value, today=today)
    except IdNumberError:
        return False
    return True
