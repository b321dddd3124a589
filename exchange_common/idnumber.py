"""The one GB 11643 rule for citizen ID numbers (公民身份号码), in Python and in DuckDB SQL.

An 18-character number is ``RRRRRR YYYYMMDD SSS C``: a 6-digit region code, the birth date, a
3-digit sequence and an ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``). The node
(datasets, persons lists), the department client and the synthetic data generator all use this
module, so a number is valid in one place exactly when it is valid in the others.

The rule (decision 0004, ``docs/decisions/0004-id-number-rule.md``):

1. Surrounding white space (:data:`SURROUNDING_SPACE`: space, tab, CR, LF and the ideographic
   space U+3000) is not part of the number. Full-width digits and ``Ｘ``/``ｘ`` become ASCII,
   and ``x`` becomes ``X`` (:data:`WIDE_CHARACTERS`); nothing else is translated (no general
   NFKC: ``①`` or ``Ⅹ`` are not digits of an ID number).
2. A 15-digit first-generation number (``RRRRRR YYMMDD SSS``, all born 1900-1999) is converted:
   ``19`` inserted before the year, the check character appended; then checked as below. This
   holds in SQL too: the node stores and matches the converted 18-character number.
3. 18 characters (``ID_LENGTH``); 17 ASCII digits and a digit or ``X`` (``ID_CHARS``); the
   MOD 11-2 check character (``ID_CHECKSUM``); a region code that appears in python-stdnum's
   GB/T 2260 history (``stdnum/cn/loc.dat``) in *any* year, or is one of
   :data:`EXTRA_REGIONS` (``ID_REGION``); a real calendar date (Feb 29 in leap years only) from
   :data:`EARLIEST_BIRTH` until ``today`` (``ID_DATE``).

The region code is the one in force when the number was *issued*, not at birth, so most elderly
recipients carry a code created after they were born, and a code abolished since stays on the
cards issued under it. python-stdnum's ``cn.ric.validate`` requires the code to exist in the
birth year and is therefore not used; its MOD 11-2 check and its region data are.

Python: :func:`normalize_id` returns the canonical number or raises :class:`IdNumberError`
(an :class:`~exchange_common.errors.InputError` and a :class:`ValueError`) whose ``code`` is one
of :data:`ID_CODES`; messages never contain the number (mask with
:func:`exchange_common.masking.mask_id`). SQL: :func:`id_normalize_sql` gives the same canonical
text and :func:`id_valid_sql` the same verdict on it, about 0.4 µs of CPU per value; the region
set travels as a 90 KB bitmap literal (a few ms of parsing per statement, not per row).
``today`` is always an argument (:func:`china_today` gives it for a clock reading).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools

from stdnum import numdb
from stdnum.iso7064 import mod_11_2

from exchange_common.errors import InputError

__all__ = [
    "CHECK_CHARACTERS",
    "CHINA_TZ",
    "EARLIEST_BIRTH",
    "EXTRA_REGIONS",
    "ID_CODES",
    "SURROUNDING_SPACE",
    "WEIGHTS",
    "WIDE_CHARACTERS",
    "IdNumberError",
    "check_character",
    "check_character_sql",
    "china_today",
    "id_normalize_sql",
    "id_valid_sql",
    "is_valid_id",
    "normalize_id",
    "region_codes",
]

#: The earliest accepted birth date. 1880 rather than 1890: the oldest documented Chinese
#: residents with ID cards (e.g. Alimihan Seyiti, recorded as born 1886) were born in the
#: 1880s, and cremation and pension records keep the numbers of people long dead. Refusing a
#: real number costs a recipient; accepting an implausible but well-formed one costs nothing.
EARLIEST_BIRTH = dt.date(1880, 1, 1)

#: China Standard Time (no daylight saving since 1991): the day boundary for "today".
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

#: Reason codes, in the order the checks run.
ID_CODES = ("ID_LENGTH", "ID_CHARS", "ID_CHECKSUM", "ID_REGION", "ID_DATE")

#: ISO 7064 MOD 11-2 weights of the 17 body digits; the check character is
#: ``CHECK_CHARACTERS[weighted sum % 11]``.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"

#: Characters stripped from both ends before anything else.
SURROUNDING_SPACE = " \t\r\n\u3000"
#: Characters translated to ASCII (as typed in some spreadsheets), mapped one by one to
#: :data:`_NARROW_CHARACTERS`.
WIDE_CHARACTERS = "０１２３４５６７８９Ｘｘx"
_NARROW_CHARACTERS = "0123456789XXX"
_TRANSLATION = str.maketrans(WIDE_CHARACTERS, _NARROW_CHARACTERS)

#: Region codes accepted beyond GB/T 2260: 830000 is the address code of residence permits for
#: Taiwan residents (港澳台居民居住证申领发放办法, 2018; 810000/820000, Hong Kong and Macao, are
#: in GB/T 2260 already). Such permits carry a number of the GB 11643 form.
EXTRA_REGIONS = frozenset({"830000"})

_DIGITS = frozenset("0123456789")
_CHECKS = frozenset(CHECK_CHARACTERS)


class IdNumberError(InputError, ValueError):
    """An ID number fails the rule. ``code`` is one of :data:`ID_CODES`; ``reason`` is the
    message without the code. The number itself is never part of the message."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason, code=code)
        self.reason = reason


def check_character(first17: str) -> str:
    """The MOD 11-2 check character (``0``-``9`` or ``X``) of 17 ASCII digits.

    Raises :class:`ValueError` when ``first17`` holds anything but ASCII digits.
    """
    if not set(first17) <= _DIGITS:
        raise ValueError("the check character is computed over digits only")
    return str(mod_11_2.calc_check_digit(first17))


def china_today(now: dt.datetime | None = None) -> dt.date:
    """The calendar date in China at ``now`` (default: the clock).

    Raises :class:`ValueError` for a naive ``now``: its zone would be a guess.
    """
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("china_today needs an aware datetime")
    return now.astimezone(CHINA_TZ).date()


@functools.cache
def region_codes() -> frozenset[str]:
    """Every 6-digit region code in python-stdnum's GB/T 2260 history (``cn/loc.dat``), in
    whichever years it was in force, plus :data:`EXTRA_REGIONS`."""
    codes: set[str] = set(EXTRA_REGIONS)

    def walk(prefix: str, nodes: list[numdb.PrefixInfo]) -> None:
        for length, low, high, _props, children in nodes:
            for value in range(int(low), int(high) + 1):
                code = prefix + str(value).zfill(length)
                if len(code) == 6:
                    codes.add(code)
                elif len(code) < 6:
                    walk(code, children)

    walk("", numdb.get("cn/loc").prefixes)
    return frozenset(codes)


def _birth_date(yyyymmdd: str, today: dt.date) -> None:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        raise IdNumberError("ID_DATE", "the birth date is not a real date") from None
    if born > today:
        raise IdNumberError("ID_DATE", "the birth date is in the future")
    if born < EARLIEST_BIRTH:
        raise IdNumberError("ID_DATE", f"the birth date is before {EARLIEST_BIRTH.year}")


def normalize_id(value: str, *, today: dt.date) -> str:
    """The canonical 18-character number of ``value`` (rule steps 1-3 of the module docstring).

    Guarantees: the result is 17 ASCII digits and a digit or ``X`` with the right check
    character, a region code of :func:`region_codes` and a real birth date between
    :data:`EARLIEST_BIRTH` and ``today``. Raises :class:`IdNumberError` with the first failing
    check's code otherwise (a 15-digit value that is not all digits: ``ID_CHARS``).
    """
    number = value.strip(SURROUNDING_SPACE).translate(_TRANSLATION)
    if len(number) == 15:
        if not set(number) <= _DIGITS:
            raise IdNumberError("ID_CHARS", "a 15-digit ID number holds only digits")
        first17 = number[:6] + "19" + number[6:]
        number = first17 + check_character(first17)
    if len(number) != 18:
        raise IdNumberError(
            "ID_LENGTH", f"an ID number has 18 characters (or 15), not {len(number)}"
        )
    if not set(number[:17]) <= _DIGITS or number[17] not in _CHECKS:
        raise IdNumberError("ID_CHARS", "an ID number is 17 digits and a digit or X")
    if check_character(number[:17]) != number[17]:
        raise IdNumberError("ID_CHECKSUM", "the check character does not match (a typing error?)")
    if number[:6] not in region_codes():
        raise IdNumberError("ID_REGION", "the region code was never assigned (GB/T 2260)")
    _birth_date(number[6:14], today)
    return number


def is_valid_id(value: str, *, today: dt.date) -> bool:
    """True when :func:`normalize_id` accepts ``value``."""
    try:
        normalize_id(value, today=today)
    except IdNumberError:
        return False
    return True


# --- DuckDB SQL ---------------------------------------------------------------------------

#: 17 ASCII digits and a digit or ``X``: GLOB is about twice as fast as a regular expression.
_ID_GLOB = "[0-9]" * 17 + "[0-9X]"
_GLOB15 = "[0-9]" * 15
#: The 17 body digits in chunks of at most three, each looked up in a 1,000-entry table.
_CHUNKS = ((0, 3), (3, 6), (6, 9), (9, 12), (12, 15), (15, 17))
_MONTH_DAYS = "[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]"


def _sql_text(text: str) -> str:
    # constants of this module only: no quote to double, but stay correct if one appears
    return "'" + text.replace("'", "''") + "'"


def check_character_sql(body: str) -> str:
    """SQL for the check character (VARCHAR) of ``body``, a BIGINT of 17 digits.

    ``body`` appears 17 times: pass a column.
    """
    terms = " + ".join(f"(({body} // {10 ** (16 - k)}) % 10) * {w}" for k, w in enumerate(WEIGHTS))
    return f"substr('{CHECK_CHARACTERS}', CAST(({terms}) % 11 AS INTEGER) + 1, 1)"


def id_normalize_sql(expr: str) -> str:
    """SQL: the text :func:`normalize_id` would return for text ``expr`` when it accepts it;
    for other values the text after the rule's cleaning (trimmed, translated, a 15-digit
    value converted), which :func:`id_valid_sql` then refuses. NULL for NULL.

    A value that already looks canonical (17 digits and a digit or ``X``) is passed through
    after one GLOB; only the rest pay for trimming, translating and converting. ``expr``
    appears several times: pass a column.
    """
    w = (
        f"translate(trim({expr}, {_sql_text(SURROUNDING_SPACE)}), "
        f"'{WIDE_CHARACTERS}', '{_NARROW_CHARACTERS}')"
    )
    n15 = f"TRY_CAST({w} AS BIGINT)"
    body = f"(({n15} // 1000000000) * 100000000000 + 19000000000 + {n15} % 1000000000)"
    converted = f"CAST({body} AS VARCHAR) || {check_character_sql(body)}"
    slow = f"CASE WHEN {w} GLOB '{_GLOB15}' THEN {converted} ELSE {w} END"
    return f"CASE WHEN {expr} GLOB '{_ID_GLOB}' THEN {expr} ELSE {slow} END"


def _weight_table(start: int, stop: int) -> str:
    """SQL for a constant list: for every value of digits ``start:stop`` (index value + 1),
    their weighted sum mod 11.

    Written as a lambda over ``range`` that DuckDB folds once per query: a list literal of the
    same 1,000 numbers costs about 10 ms of parsing in every statement that uses it.
    """
    width = stop - start
    terms = " + ".join(
        f"((v // {10 ** (width - 1 - k)}) % 10) * {WEIGHTS[start + k]}" for k in range(width)
    )
    return f"list_transform(range({10**width}), lambda v: ({terms}) % 11)"


@functools.cache
def _region_bitmap() -> tuple[int, int, str]:
    """(lowest code, bit count, base64 bitmap): bit ``code - lowest`` (MSB first) is set for
    every code of :func:`region_codes`. About 90 KB, 120 KB as base64."""
    codes = sorted(int(c) for c in region_codes())
    low = codes[0]
    size = (codes[-1] - low) // 8 * 8 + 8
    bits = bytearray(size // 8)
    for code in codes:
        i = code - low
        bits[i >> 3] |= 0x80 >> (i & 7)
    return low, size, base64.b64encode(bytes(bits)).decode("ascii")


def _region_sql(code: str) -> str:
    """SQL: true when the integer ``code`` is in :func:`region_codes`.

    A bit lookup in a constant BIT value that DuckDB decodes once per statement (a list or IN
    of the ~6,900 codes costs about 30 ms of parsing per statement; this, a few ms). The index
    is reduced into range because DuckDB evaluates every AND operand of a projection, and
    ``get_bit`` raises on an index outside the bitmap.
    """
    low, size, b64 = _region_bitmap()
    index = f"CAST(((({code}) - {low}) % {size} + {size}) % {size} AS INTEGER)"
    return (
        f"({code} BETWEEN {low} AND {low + size - 1} "
        f"AND get_bit(CAST(from_base64('{b64}') AS BIT), {index}) = 1)"
    )


def _id_check(text: str, number: str, today: dt.date) -> str:
    """SQL that is true when canonical ``text`` passes rule step 3, false when it does not,
    NULL when ``text`` is NULL.

    ``number`` is ``TRY_CAST(text AS BIGINT)`` (all 18 characters; NULL when the check
    character is ``X``). The check is one string-to-number cast, a GLOB, then integer
    arithmetic and lookups: the body is ``number // 10`` (or the first 17 characters cast, for
    an ``X``), the check value ``number % 10`` (or 10), and the number is valid when the
    weighted digit sum plus the check value is 1 mod 11 (ISO 7064 MOD 11-2). The cast is
    permissive (``0x1F``, ``1e5``, ``1_0``) but its value matters only once the GLOB has
    established 18 ASCII digits (or 17 and an ``X``); then every term is non-NULL, so the
    result is never NULL for a non-NULL ``text``. The date test comes first on purpose: DuckDB
    computes a repeated subexpression once only if it occurs in the first operand of an AND.
    """
    body = f"coalesce({number} // 10, TRY_CAST(left({text}, 17) AS BIGINT))"
    check = f"coalesce({number} % 10, 10)"
    terms = []
    for a, z in _CHUNKS:
        part = body if z == 17 else f"({body} // {10 ** (17 - z)})"
        if a > 0:
            part = f"({part} % {10 ** (z - a)})"
        terms.append(f"{_weight_table(a, z)}[{part} + 1]")
    ymd = f"(({body} // 1000) % 100000000)"
    y, m, d = f"({ymd} // 10000)", f"(({ymd} // 100) % 100)", f"({ymd} % 100)"
    leap = f"({y} % 4 = 0 AND ({y} % 100 <> 0 OR {y} % 400 = 0))"
    first, last = int(f"{EARLIEST_BIRTH:%Y%m%d}"), int(f"{today:%Y%m%d}")
    return (
        f"({ymd} BETWEEN {first} AND {last} AND {text} GLOB '{_ID_GLOB}' "
        f"AND {m} BETWEEN 1 AND 12 AND {d} >= 1 "
        f"AND ({d} <= {_MONTH_DAYS}[{m}] OR ({m} = 2 AND {d} = 29 AND {leap})) "
        f"AND ({' + '.join(terms)} + {check}) % 11 = 1 "
        f"AND {_region_sql(f'({body} // 100000000000)')})"
    )


def id_valid_sql(expr: str, *, today: dt.date) -> str:
    """SQL that is true when text ``expr`` is a canonical number :func:`normalize_id` accepts
    (with the same ``today``): for every text ``s``, ``id_valid_sql(id_normalize_sql(s))`` is
    true exactly when ``normalize_id(s)`` returns. False for any other text, NULL for NULL.

    It checks the canonical form only (no trimming, no ``x``): apply :func:`id_normalize_sql`
    first. ``expr`` appears several times: pass a column. Costs about 0.4 µs of CPU per value
    as a projection or filter term of its own; inside ``coalesce()`` or after another AND
    operand DuckDB no longer shares its repeated parts and it costs about twice that.
    """
    return _id_check(expr, f"TRY_CAST({expr} AS BIGINT)", today)
