"""parse_money: outside numbers read once into Decimals that a NUMERIC(20, 8) column
stores exactly, and to_decimal, the same reading without floats or storage bounds.

Every refusal is a ValueError whose message opens with "<field>: ".
"""
from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from domain.money import MONEY_LIMIT, MONEY_PLACES, parse_money, to_decimal

D = Decimal
LARGEST = D("999999999999.99999999")


def refused(value: object, field: str = "amount") -> str:
    """Assert ``parse_money`` refuses ``value`` with a ValueError opening with the field
    name; return the message."""
    with pytest.raises(ValueError) as info:
        parse_money(value, field)
    assert type(info.value) is ValueError
    message = str(info.value)
    assert message.startswith(f"{field}: ")
    return message


def places(number: Decimal) -> int:
    return max(0, -number.normalize(decimal.Context(prec=100)).as_tuple().exponent)


# --- what is read, and how --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D("2450.50"), D("2450.50")),
        (2450, D("2450")),
        ("2450.50", D("2450.50")),
        (" 2450.50 ", D("2450.50")),
        (-5, D("-5")),
        (0, D("0")),
    ],
)
def test_decimal_int_and_numeric_string_are_read_exactly(value: object, expected: Decimal) -> None:
    result = parse_money(value, "amount")

    assert result == expected and type(result) is Decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [(2450.50, "2450.5"), (100.1, "100.1"), (0.1, "0.1"), (2430.00, "2430.0"), (1e-08, "1E-8"), (999999999999.99, "999999999999.99")],
)
def test_a_float_is_read_once_by_its_shortest_repr(value: float, expected: str) -> None:
    # Decimal(100.1) would be 100.099999999999994315658113919198513031005859375.
    assert parse_money(value, "amount") == D(expected)


def test_a_float_sum_is_read_as_the_float_it_is_not_the_sum_meant() -> None:
    # 0.1 + 0.2 is the float 0.30000000000000004: seventeen places, refused, not rounded.
    assert "has 17 decimal places" in refused(0.1 + 0.2)


def test_a_decimal_subclass_comes_back_as_a_plain_decimal() -> None:
    class Paise(Decimal):
        pass

    result = parse_money(Paise("1.25"), "amount")

    assert result == D("1.25") and type(result) is Decimal


@pytest.mark.parametrize("value", [True, False, None, [D(1)], object(), b"1"])
def test_bool_and_non_numbers_are_refused(value: object) -> None:
    assert "must be a Decimal, int, float or numeric string" in refused(value)


@pytest.mark.parametrize("value", ["abc", "", "1.2.3", "1\x00"])
def test_a_string_that_is_not_a_number_is_refused(value: str) -> None:
    assert "is not a number" in refused(value)


def test_a_very_long_string_is_shown_cut_short() -> None:
    message = refused("x" * 1_000_000)

    assert len(message) < 200 and "1000002 characters" in message


@pytest.mark.parametrize(
    "value",
    [D("NaN"), D("-NaN"), D("sNaN"), D("Infinity"), D("-Infinity"), float("nan"), float("inf"), float("-inf"),
     "NaN", "nan", "sNaN", "inf", "-Infinity"],
)
def test_nan_and_infinities_are_refused(value: object) -> None:
    assert "must be finite" in refused(value)


# --- the storage bounds: NUMERIC(20, 8) -------------------------------------------------


@pytest.mark.parametrize("value", [LARGEST, -LARGEST, D("999999999999"), "999999999999.99", 999999999999.99])
def test_just_below_ten_to_the_twelve_is_accepted(value: object) -> None:
    assert parse_money(value, "amount") == D(str(value))


@pytest.mark.parametrize(
    "value", [MONEY_LIMIT, -MONEY_LIMIT, D("1E+12"), D("1000000000000.00000000"), "1000000000000", 1e12, 1e300]
)
def test_ten_to_the_twelve_and_beyond_is_refused_naming_the_limit(value: object) -> None:
    message = refused(value, "price")

    assert "is out of range" in message and "10**12" in message and "NUMERIC(20,8)" in message


@pytest.mark.parametrize("value", [D("1E+999999"), D("9E+999998"), D("-1E+999999"), "1E+999999", D("1E+999999999999")])
def test_huge_exponents_are_refused_as_out_of_range_without_overflow(value: object) -> None:
    # Any arithmetic on these (even value / 0.01) raises decimal.Overflow; the check must not.
    assert "10**12" in refused(value, "price")


def test_an_exponent_beyond_what_decimal_holds_is_refused_as_not_a_number() -> None:
    assert "is not a number" in refused("1E+99999999999999999999", "price")


@pytest.mark.parametrize("value", [D("0.00000001"), D("1.00000001"), LARGEST, "0.12345678", 1e-08])
def test_eight_decimal_places_are_accepted(value: object) -> None:
    assert places(parse_money(value, "amount")) <= MONEY_PLACES


@pytest.mark.parametrize("value", [D("1.000000001"), D("0.000000001"), "999999999999.999999999", 5e-324, D("1E-999999999")])
def test_nine_or_more_decimal_places_are_refused_not_rounded(value: object) -> None:
    assert "at most 8 decimal places" in refused(value, "price")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(D("1.0000000000"), "1.00000000"), (D("1" + "0" * 50 + "E-50"), "1.00000000"), (D("0E-30"), "0E-8")],
)
def test_trailing_zeros_beyond_eight_places_are_dropped_exactly(value: Decimal, expected: str) -> None:
    result = parse_money(value, "amount")

    assert result == value and str(result) == expected


@pytest.mark.parametrize(("value", "expected"), [(D("1E+3"), "1000"), (D("25E+10"), "250000000000"), (D("0E+999999"), "0")])
def test_a_positive_exponent_is_written_out(value: Decimal, expected: str) -> None:
    assert str(parse_money(value, "amount")) == expected


def test_the_callers_decimal_precision_does_not_round_the_result() -> None:
    with decimal.localcontext(decimal.Context(prec=3)):
        assert parse_money(D("1.0000000000"), "amount") == D("1")
        assert str(parse_money(D("25E+10"), "amount")) == "250000000000"
        assert parse_money("123456789.12345678", "amount") == D("123456789.12345678")


@given(
    st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True),
        st.floats(),
        st.integers(),
        st.text(),
        st.from_regex(r"\A-?[0-9]{0,14}(\.[0-9]{0,10})?([eE][-+]?[0-9]{1,7})?\Z"),
    )
)
@example(D("1E+999999"))
@example(D("9E+999998"))
@example(D("1E-999999"))
@example(D("0E+999999"))
@example("1E+99999999999999999999")
@example(-0.0)
def test_parse_money_returns_a_storable_decimal_or_refuses_with_a_value_error(value: object) -> None:
    try:
        result = parse_money(value, "amount")
    except ValueError as exc:
        assert type(exc) is ValueError and str(exc).startswith("amount: ")
        return
    assert type(result) is Decimal and result.is_finite()
    assert abs(result) < MONEY_LIMIT
    assert places(result) <= MONEY_PLACES
    assert -MONEY_PLACES <= result.as_tuple().exponent <= 0
    if isinstance(value, float):
        assert result == D(repr(value))
    elif isinstance(value, str):
        assert result == D(value.strip())
    else:
        assert result == value


# --- to_decimal: the same reading, no floats, no storage bounds -----------------------


def test_to_decimal_refuses_floats_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^band_percent: floats are not accepted for money"):
        to_decimal(20.5, "band_percent")


def test_to_decimal_keeps_more_than_eight_places_for_values_not_stored_as_given() -> None:
    # A charge component (GST) before Charges.rounded.
    assert to_decimal("0.008277948", "charges.gst") == D("0.008277948")


@pytest.mark.parametrize("value", [D("NaN"), "inf", True, None, "abc"])
def test_to_decimal_refuses_what_parse_money_refuses_for_its_type_or_finiteness(value: object) -> None:
    with pytest.raises(ValueError, match=r"^capital: "):
        to_decimal(value, "capital")
