"""GB 11643 ID numbers: normalisation, every reason code, 15-digit conversion, masking, and
property tests (valid numbers round-trip; every single-character change is caught)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange_client.idnumber import (
    PROVINCE_PREFIXES,
    IdNumberError,
    check_character,
    is_valid_id,
    mask_id,
    mask_name,
    normalize_id,
)

TODAY = dt.date(2026, 11, 22)
#: The GB 11643 standard's own example.
SAMPLE = "11010519491231002X"


def make_id(region: str, born: dt.date, seq: int) -> str:
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + check_character(first17)


def test_valid_and_normalised() -> None:
    assert normalize_id(SAMPLE, today=TODAY) == SAMPLE
    assert normalize_id(" 11010519491231002x ", today=TODAY) == SAMPLE
    # full-width digits and Ｘ (as typed in some spreadsheets)
    full = "".join(chr(ord(c) + 0xFEE0) for c in SAMPLE)
    assert normalize_id(full, today=TODAY) == SAMPLE
    assert is_valid_id(SAMPLE, today=TODAY)
    assert not is_valid_id("123", today=TODAY)


def test_region_code_not_checked_against_birth_year() -> None:
    # 330110 (余杭区) was created long after 1930: stdnum's cn.ric would reject this person.
    number = make_id("330110", dt.date(1930, 5, 1), 12)
    assert normalize_id(number, today=TODAY) == number
    # any code under a valid prefix is accepted, even one never assigned
    assert normalize_id(make_id("119999", dt.date(1980, 1, 1), 1), today=TODAY)


def test_fifteen_digits_converted() -> None:
    assert normalize_id("110105491231002", today=TODAY) == SAMPLE
    with pytest.raises(IdNumberError) as e:
        normalize_id("11010549123100X", today=TODAY)
    assert e.value.code == "ID_CHARS"
    with pytest.raises(IdNumberError) as e:
        normalize_id("110105491331002", today=TODAY)
    assert e.value.code == "ID_DATE"
    with pytest.raises(IdNumberError) as e:
        normalize_id("990105491231002", today=TODAY)
    assert e.value.code == "ID_REGION"


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
        (make_id("110105", dt.date(1889, 12, 31), 2), "ID_DATE"),
        ("11010519490230" + "002" + check_character("11010519490230002"), "ID_DATE"),
    ],
)
def test_reason_codes(value: str, code: str) -> None:
    with pytest.raises(IdNumberError) as e:
        normalize_id(value, today=TODAY)
    assert e.value.code == code
    assert isinstance(e.value, ValueError)
    assert value[6:14] not in str(e.value) or not value  # the number is never in the message


def test_masking() -> None:
    assert mask_id("330102199001011234") == "330102********1234"
    assert mask_id("110105491231002") == "110105*****1002"
    assert mask_id("12345") == "*****"
    assert mask_name("张三丰") == "张**"
    assert mask_name("张三") == "张*"
    assert mask_name("张") == "*"
    assert mask_name("") == ""


regions = st.sampled_from(sorted(PROVINCE_PREFIXES)).flatmap(
    lambda p: st.integers(0, 9999).map(lambda n: f"{p}{n:04d}")
)
births = st.dates(min_value=dt.date(1890, 1, 1), max_value=TODAY)
valid_ids = st.builds(make_id, regions, births, st.integers(0, 999))


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
