"""The one GB 11643 rule: known-answer vectors for every reason code, region history, 15-digit
conversion, masking, and properties: Python and DuckDB SQL give the same verdict (and the same
canonical text) for arbitrary strings and for near-valid mutations of valid numbers."""

# SQL is built from the module's expressions over fixed column names; values are parameters.
# ruff: noqa: S608

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from exchange_common.errors import InputError
from exchange_common.idnumber import (
    CHECK_CHARACTERS,
    EARLIEST_BIRTH,
    WEIGHTS,
    IdNumberError,
    check_character,
    check_character_sql,
    china_today,
    id_normalize_sql,
    id_valid_sql,
    is_valid_id,
    normalize_id,
    region_codes,
)
from exchange_common.masking import mask_id, mask_id_numbers, mask_name
from exchange_server.data.synthetic import REGIONS

TODAY = dt.date(2026, 11, 22)
#: The GB 11643 standard's own example.
SAMPLE = "11010519491231002X"


def make_id(region: str, born: dt.date, seq: int) -> str:
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + check_character(first17)


def _reference_check(first17: str) -> str:
    """MOD 11-2 written out from the standard, independent of stdnum."""
    return CHECK_CHARACTERS[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]


def _code(value: str) -> str | None:
    try:
        normalize_id(value, today=TODAY)
    except IdNumberError as e:
        return e.code
    return None


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    yield c
    c.close()


def _sql(
    con: duckdb.DuckDBPyConnection, values: list[str], today: dt.date = TODAY
) -> list[tuple[str | None, bool | None]]:
    """(canonical text, verdict) of each value by the SQL rule, in order."""
    rows = con.execute(
        f"SELECT n, {id_valid_sql('n', today=today)} FROM (SELECT i, "
        f"{id_normalize_sql('s')} AS n FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS t(s, i)) "
        "ORDER BY i",
        [values],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _python(values: list[str], today: dt.date = TODAY) -> list[str | None]:
    out: list[str | None] = []
    for v in values:
        try:
            out.append(normalize_id(v, today=today))
        except IdNumberError:
            out.append(None)
    return out


def _assert_same(con: duckdb.DuckDBPyConnection, values: list[str]) -> None:
    got = _sql(con, values)
    want = _python(values)
    mismatches = [
        (v, g, w)
        for v, g, w in zip(values, got, want, strict=True)
        if g[1] is not (w is not None) or (w is not None and g[0] != w)
    ]
    assert mismatches == []


# ----------------------------------------------------------------------------- known answers


def test_check_character_known_answers() -> None:
    assert check_character("11010519491231002") == "X"  # GB 11643's example
    assert check_character("44052418800101001") == "4"
    rnd = random.Random(11643)
    for _ in range(2_000):
        body = f"{rnd.randrange(10**17):017d}"
        assert check_character(body) == _reference_check(body)
    with pytest.raises(ValueError):
        check_character("1101051949123100X")


def test_check_character_sql_agrees(con: duckdb.DuckDBPyConnection) -> None:
    rnd = random.Random(7)
    bodies = [rnd.randrange(10**16, 10**17) for _ in range(2_000)]
    rows = con.execute(
        f"SELECT b, {check_character_sql('b')} FROM unnest(?::BIGINT[]) t(b)", [bodies]
    ).fetchall()
    assert all(c == check_character(f"{b:017d}") for b, c in rows)


def test_valid_and_normalised() -> None:
    assert normalize_id(SAMPLE, today=TODAY) == SAMPLE
    assert normalize_id(" 11010519491231002x ", today=TODAY) == SAMPLE
    assert normalize_id("\u300011010519491231002x\t\r\n", today=TODAY) == SAMPLE
    # full-width digits and Ｘ / ｘ (as typed in some spreadsheets)
    full = "".join(chr(ord(c) + 0xFEE0) for c in SAMPLE)
    assert normalize_id(full, today=TODAY) == SAMPLE
    assert normalize_id(full.lower(), today=TODAY) == SAMPLE
    assert is_valid_id(SAMPLE, today=TODAY)
    assert not is_valid_id("123", today=TODAY)


def test_only_listed_characters_are_translated() -> None:
    # NFKC would make these digits / X; the rule does not: they are not how IDs are written
    assert _code("①1010519491231002X") == "ID_CHARS"
    assert _code("1101051949123100２Ⅹ") == "ID_CHARS"
    assert _code("11010519491231002X\u00a0") == "ID_LENGTH"  # NBSP is not surrounding space


def test_region_code_is_any_that_ever_existed() -> None:
    # 330110 余杭区 [2001-]: created long after this person's birth; stdnum's cn.ric refuses it
    late = make_id("330110", dt.date(1930, 5, 1), 12)
    assert normalize_id(late, today=TODAY) == late
    with pytest.raises(ValidationError):
        ric.validate(late)
    # 130204 东矿区 [1983-1994]: created after the birth and abolished since; a card issued
    # there in 1985 carries it for life
    gone = make_id("130204", dt.date(1950, 3, 1), 7)
    assert normalize_id(gone, today=TODAY) == gone
    with pytest.raises(ValidationError):
        ric.validate(gone)
    # 110103 崇文区 [-2010]: abolished before this birth year
    abolished = make_id("110103", dt.date(2015, 6, 1), 1)
    assert normalize_id(abolished, today=TODAY) == abolished
    with pytest.raises(ValidationError):
        ric.validate(abolished)
    # residence permits for Hong Kong, Macao and Taiwan residents
    for region in ("810000", "820000", "830000"):
        assert is_valid_id(make_id(region, dt.date(1960, 1, 1), 1), today=TODAY)


@pytest.mark.parametrize("region", ["119999", "990105", "100105", "000000", "830001", "910101"])
def test_region_code_never_assigned_is_refused(region: str) -> None:
    assert _code(make_id(region, dt.date(1980, 1, 1), 1)) == "ID_REGION"


def test_region_codes_come_from_stdnum_history() -> None:
    codes = region_codes()
    assert len(codes) > 6_800
    assert {"110101", "110103", "120110", "130204", "110118", "830000"} <= codes
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert {f"{r:06d}" for r in REGIONS} <= codes  # synthetic data uses real codes


def test_fifteen_digits_converted() -> None:
    assert normalize_id("110105491231002", today=TODAY) == SAMPLE
    assert normalize_id(" １１０１０５４９１２３１００２ ", today=TODAY) == SAMPLE
    assert _code("11010549123100X") == "ID_CHARS"
    assert _code("110105491331002") == "ID_DATE"
    assert _code("990105491231002") == "ID_REGION"


@pytest.mark.parametrize(
    ("born", "valid"),
    [
        (dt.date(2000, 2, 29), True),
        (dt.date(2024, 2, 29), True),
        (EARLIEST_BIRTH, True),
        (TODAY, True),
        (dt.date(1880, 2, 29), True),
    ],
)
def test_birth_date_bounds(born: dt.date, valid: bool) -> None:
    assert is_valid_id(make_id("110105", born, 3), today=TODAY) is valid


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "ID_LENGTH"),
        ("1101051949123100", "ID_LENGTH"),
        ("11010519491231002X1", "ID_LENGTH"),
        ("1101051949123100AX", "ID_CHARS"),
        ("11010519491231002Y", "ID_CHARS"),
        ("X10105194912310021", "ID_CHARS"),
        ("110105194912310021", "ID_CHECKSUM"),
        (make_id("990105", dt.date(1949, 12, 31), 2), "ID_REGION"),
        (make_id("100105", dt.date(1949, 12, 31), 2), "ID_REGION"),
        (make_id("110105", dt.date(2027, 1, 1), 2), "ID_DATE"),
        (make_id("110105", TODAY + dt.timedelta(days=1), 2), "ID_DATE"),
        (make_id("110105", dt.date(1879, 12, 31), 2), "ID_DATE"),
        ("11010519490230" + "002" + check_character("11010519490230002"), "ID_DATE"),
        ("11010519000229" + "002" + check_character("11010519000229002"), "ID_DATE"),
        ("11010520230229" + "002" + check_character("11010520230229002"), "ID_DATE"),
        ("11010519491300" + "002" + check_character("11010519491300002"), "ID_DATE"),
        ("11010519491200" + "002" + check_character("11010519491200002"), "ID_DATE"),
    ],
)
def test_reason_codes(value: str, code: str) -> None:
    with pytest.raises(IdNumberError) as e:
        normalize_id(value, today=TODAY)
    assert e.value.code == code
    assert isinstance(e.value, ValueError) and isinstance(e.value, InputError)
    assert value[6:14] not in str(e.value) or not value  # the number is never in the message


def test_known_vectors_in_sql(con: duckdb.DuckDBPyConnection) -> None:
    values = [
        SAMPLE,
        SAMPLE.lower(),
        " 11010519491231002x ",
        "110105491231002",
        "１１０１０５１９４９１２３１００２Ｘ",
        make_id("330110", dt.date(1930, 5, 1), 12),
        make_id("130204", dt.date(1950, 3, 1), 7),
        make_id("830000", dt.date(1960, 1, 1), 1),
        make_id("119999", dt.date(1980, 1, 1), 1),
        make_id("110105", TODAY, 1),
        make_id("110105", TODAY + dt.timedelta(days=1), 1),
        make_id("110105", dt.date(1879, 12, 31), 1),
        make_id("110105", EARLIEST_BIRTH, 1),
        "11010520000229" + "001" + check_character("11010520000229001"),
        "11010519000229" + "001" + check_character("11010519000229001"),
        "110105194912310021",
    ]
    verdicts = [v for _, v in _sql(con, values)]
    assert verdicts == [True] * 8 + [False, True, False, False, True, True, False, False]
    _assert_same(con, values)
    assert con.execute(f"SELECT {id_valid_sql('NULL', today=TODAY)}").fetchone() == (None,)
    assert con.execute(f"SELECT {id_normalize_sql('NULL')}").fetchone() == (None,)


def test_today_moves_the_bound(con: duckdb.DuckDBPyConnection) -> None:
    newborn = make_id("110105", dt.date(2026, 11, 23), 1)
    assert not is_valid_id(newborn, today=TODAY)
    assert is_valid_id(newborn, today=dt.date(2026, 11, 23))
    assert [v for _, v in _sql(con, [newborn])] == [False]
    assert [v for _, v in _sql(con, [newborn], dt.date(2026, 11, 23))] == [True]


def test_china_today() -> None:
    assert china_today(dt.datetime(2026, 12, 1, 16, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 2)
    assert china_today(dt.datetime(2026, 12, 1, 15, 59, tzinfo=dt.UTC)) == dt.date(2026, 12, 1)
    with pytest.raises(ValueError):
        china_today(dt.datetime(2026, 12, 1, 16, 0))  # naive: its zone would be a guess


def test_masking() -> None:
    assert mask_id("330102199001011234") == "330102********1234"
    assert mask_id("110105491231002") == "110105*****1002"
    assert mask_id("12345") == "*****"
    assert mask_name("张三丰") == "张**"
    assert mask_name("张三") == "张*"
    assert mask_name("张") == "*"
    assert mask_name("") == ""


# ----------------------------------------------------------------------------- Python = SQL


def test_sql_agrees_with_python_on_a_random_sample(con: duckdb.DuckDBPyConnection) -> None:
    """20,000 near-valid values (moved from the node's old id_valid_sql test): years around
    the bounds, impossible months and days, wrong check characters, what a permissive number
    cast would accept, 15-digit forms, regions real and invented."""
    rnd = random.Random(11643)
    codes = sorted(region_codes())
    samples = ["", "X", SAMPLE, SAMPLE.lower(), "0" * 18, "1" * 17 + "X", "0" * 15]
    for _ in range(20_000):
        region = rnd.choice(codes) if rnd.random() < 0.8 else f"{rnd.randint(0, 999999):06d}"
        year = rnd.choice([rnd.randint(1870, 2030), rnd.randint(0, 9999), 1880, 1900, 2000])
        body = (
            f"{region}{year:04d}{rnd.randint(0, 13):02d}"
            f"{rnd.choice([rnd.randint(0, 32), 29, 30, 31]):02d}{rnd.randint(0, 999):03d}"
        )
        text = body + (check_character(body) if rnd.random() < 0.7 else rnd.choice("0123456789X"))
        r = rnd.random()
        if r < 0.05:
            text = text[:17]
        elif r < 0.1:
            text += "1"
        elif r < 0.2:  # what a permissive number cast would accept
            i = rnd.randrange(18)
            text = text[:i] + rnd.choice(" +-._eEbBoO,a１٣xｘ\t") + text[i + 1 :]
        elif r < 0.22:
            text = rnd.choice(["0x", "0X", "0b", "-", "+"]) + text[2:]
        elif r < 0.23:
            text = "1.00000000000E16" + text[16:]
        elif r < 0.33:
            text = text[:6] + text[8:17]  # 15-digit form
        elif r < 0.36:
            text = rnd.choice([" ", "\u3000", "\t"]) + text.lower() + rnd.choice(["", " ", "\n"])
        samples.append(text)
    _assert_same(con, samples)
    assert sum(v is not None for v in _python(samples)) > 5_000  # plenty of valid numbers


regions = st.sampled_from(sorted(region_codes()))
births = st.dates(min_value=EARLIEST_BIRTH, max_value=TODAY)
valid_ids = st.builds(make_id, regions, births, st.integers(0, 999))
#: Characters a mutation may bring in: digits, X in every width and case, spaces, look-alikes.
_NEAR = "0123456789Xx０１９Ｘｘ \t\u3000\u00a0①Ⅹ٣-+.e"


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    number = draw(valid_ids)
    kind = draw(st.sampled_from(["replace", "delete", "insert", "fifteen", "case", "space"]))
    pos = draw(st.integers(0, len(number) - 1))
    char = draw(st.sampled_from(_NEAR))
    if kind == "replace":
        return number[:pos] + char + number[pos + 1 :]
    if kind == "delete":
        return number[:pos] + number[pos + 1 :]
    if kind == "insert":
        return number[:pos] + char + number[pos:]
    if kind == "fifteen":
        return number[:6] + number[8:17]
    if kind == "case":
        return number.lower()
    return char + number + draw(st.sampled_from(["", " ", "\u3000", "\n"]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=20) | st.text(alphabet=_NEAR, min_size=14, max_size=19)))
def test_sql_agrees_with_python_for_arbitrary_strings(
    con: duckdb.DuckDBPyConnection, values: list[str]
) -> None:
    _assert_same(con, values)


@settings(max_examples=100, deadline=None)
@given(st.lists(near_valid(), min_size=1, max_size=40))
def test_sql_agrees_with_python_for_near_valid_values(
    con: duckdb.DuckDBPyConnection, values: list[str]
) -> None:
    _assert_same(con, values)


@given(valid_ids)
def test_valid_numbers_round_trip(number: str) -> None:
    assert normalize_id(number, today=TODAY) == number
    assert normalize_id(number.lower(), today=TODAY) == number
    masked = mask_id(number)
    assert masked[:6] == number[:6] and masked[-4:] == number[-4:] and "*" * 8 in masked


@given(regions, st.dates(dt.date(1900, 1, 1), dt.date(1999, 12, 31)), st.integers(0, 999))
def test_fifteen_digit_form_converts(region: str, born: dt.date, seq: int) -> None:
    full = make_id(region, born, seq)
    old = full[:6] + full[8:17]
    assert normalize_id(old, today=TODAY) == full


@given(valid_ids, st.integers(0, 17), st.sampled_from("0123456789Xx"))
def test_any_single_change_is_detected(number: str, pos: int, char: str) -> None:
    changed = number[:pos] + char + number[pos + 1 :]
    if changed.upper() == number:
        return
    with pytest.raises(IdNumberError) as e:
        normalize_id(changed, today=TODAY)
    assert e.value.code in ("ID_CHARS", "ID_CHECKSUM", "ID_REGION", "ID_DATE")


def test_mask_id_numbers_masks_numbers_standing_alone_and_keeps_codes_and_ids() -> None:
    text = (
        "person 330102199001011234 and 11010549123100x, old 110105491231002; "
        "dept MZ330100 bundle 811dd1c6-35a4-410d-b4eb-213da1167328 phone 13800138000"
    )
    masked = mask_id_numbers(text)
    assert "330102199001011234" not in masked and "330102********1234" in masked
    assert "110105491231002" not in masked and "110105*****1002" in masked
    assert "MZ330100" in masked and "811dd1c6-35a4-410d-b4eb-213da1167328" in masked
    assert "13800138000" in masked  # not an ID number (11 digits): mask_text is for free text
