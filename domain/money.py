"""Turning outside numbers into exact Decimals, refusing the ones that are not exact."""
from __future__ import annotations

from decimal import (
    Context,
    Decimal,
    DecimalException,
    Inexact,
    InvalidOperation,
    Overflow,
)

# Money columns are NUMERIC(20, 8): twelve digits before the point, eight after. A value
# outside that would be refused by PostgreSQL or, worse, stored rounded.
MONEY_PLACES = 8
MONEY_LIMIT = 10**12
"""Exclusive bound on the absolute value of money (NUMERIC(20, 8))."""

_LARGEST_ADJUSTED = 11  # adjusted() (exponent of the leading digit) of anything below 10**12
_PLACE = Decimal("1E-8")
_UNIT = Decimal(1)
# The quantizes in `_storable` are exact by construction (at most 20 significant digits);
# trapping Inexact turns a broken invariant into an error instead of a rounded price, and
# an explicit context keeps a caller's thread-local precision out of it.
_EXACT = Context(prec=40, traps=[InvalidOperation, Inexact, Overflow])
_SHOWN_CHARACTERS = 40


def parse_money(value: object, field: str) -> Decimal:
    """Return ``value`` as a finite Decimal that a NUMERIC(20, 8) column stores exactly.

    Accepts Decimal, int, numeric strings and floats (bool is refused). A float is read
    once, by its shortest repr: 2450.50 becomes Decimal("2450.5"), not the binary
    fraction 2450.5000000000000000... it approximates, and 0.1 becomes Decimal("0.1").

    Refused, with a ValueError whose message starts with ``"<field>: "``: NaN and
    infinities; an absolute value of 10**12 or more; more than 8 decimal places once
    trailing zeros are dropped (Decimal("1.0000000000") is fine, "1.000000001" is not).
    Huge exponents (Decimal("1E+999999")) are refused from the exponent alone, before any
    arithmetic could overflow.

    The result carries at most 8 places and no positive exponent, so it has at most
    20 significant digits and later arithmetic (tick division, P&L) stays exact.
    """
    return _storable(_read(value, field, floats=True), field)


def to_decimal(value: object, field: str) -> Decimal:
    """Return ``value`` as a finite Decimal; accepts Decimal, int and numeric strings.

    The same reading as `parse_money`, with two differences. Floats are refused: the
    callers (settings, charges, the paper broker) read text or Decimals, where a float is
    a sign of a lossy path upstream. The storage bounds are not applied: these values are
    not all stored as given (charge components carry 9 places until `Charges.rounded`).
    """
    return _read(value, field, floats=False)


def _read(value: object, field: str, *, floats: bool) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be a {_kinds(floats)}, not bool")
    if isinstance(value, float):
        if not floats:
            raise ValueError(
                f"{field}: floats are not accepted for money ({value!r}); "
                f"pass Decimal('{value}') or the string '{value}'"
            )
        # float.__repr__, not repr(): a float subclass could override how it prints.
        result = Decimal(float.__repr__(value))
    elif isinstance(value, Decimal):
        result = value if type(value) is Decimal else Decimal(value)
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except DecimalException:  # not a number, or an exponent beyond what Decimal holds
            raise ValueError(f"{field}: {_shown(value)} is not a number Decimal can hold") from None
    else:
        raise ValueError(f"{field}: must be a {_kinds(floats)}, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{field}: must be finite, got {result}")
    return result


def _kinds(floats: bool) -> str:
    return "Decimal, int, float or numeric string" if floats else "Decimal, int or numeric string"


def _storable(number: Decimal, field: str) -> Decimal:
    # Only the exponent and digits are looked at here; nothing is computed until the
    # value is known to be small, so no exponent can overflow.
    if not number.is_zero() and number.adjusted() > _LARGEST_ADJUSTED:
        raise ValueError(
            f"{field}: {_shown(number)} is out of range; the absolute value must be below "
            f"10**12 ({MONEY_LIMIT}), the limit of the NUMERIC(20,8) column"
        )
    places = _decimal_places(number)
    if places > MONEY_PLACES:
        raise ValueError(
            f"{field}: {_shown(number)} has {places} decimal places; money takes at most "
            f"{MONEY_PLACES} decimal places (the NUMERIC(20,8) column would round it)"
        )
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked by _read
    if exponent < -MONEY_PLACES:  # trailing zeros beyond 8 places: drop them, exactly
        return number.quantize(_PLACE, context=_EXACT)
    if exponent > 0:  # 1E+3 -> 1000, so no stored value prints in exponent form
        return number.quantize(_UNIT, context=_EXACT)
    return number


def _decimal_places(number: Decimal) -> int:
    """How many places after the point finite ``number`` needs, trailing zeros ignored:
    2 for 1.50000, 0 for 1E+3 and for any zero. Reads the digits; does no arithmetic."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by _read
    trailing_zeros = len(digits) - len(bytes(digits).rstrip(b"\x00"))
    if trailing_zeros == len(digits):  # zero
        return 0
    return max(0, -(exponent + trailing_zeros))


def _shown(value: object) -> str:
    """The value for an error message, cut short: a caller's string may be megabytes."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    if len(text) <= _SHOWN_CHARACTERS:
        return text
    return f"{text[:_SHOWN_CHARACTERS]}... ({len(text)} characters)"


# Average prices are kept to 8 places, the precision the database stores, so a value
# read back after a restart is the value that was in memory.
AVERAGE_PRICE_PLACES = Decimal("0.00000001")


CENTS = Decimal("0.01")
_ZERO_CENTS = Decimal("0.00")


def natural(value: Decimal) -> Decimal:
    """``value`` at the scale a trader reads it: at least two places, and no trailing
    zeros beyond them (1520.50000000 -> 1520.50, 0E-8 -> 0.00, 0.00250000 -> 0.0025).
    Equal to ``value``; only its exponent changes."""
    if not value.is_finite() or value.adjusted() > 20:
        return value  # nothing a trader reads; and quantize would overflow the context
    if not value:
        return _ZERO_CENTS  # one shared zero (immutable): every live order has a filled value of 0
    reduced = value.normalize()
    if reduced.as_tuple().exponent >= -2:  # type: ignore[operator]
        return value.quantize(CENTS)
    return reduced


def average(total_value: Decimal, quantity: int) -> Decimal:
    return natural((total_value / quantity).quantize(AVERAGE_PRICE_PLACES))

