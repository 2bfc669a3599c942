"""Turning outside numbers into exact Decimals, refusing the ones that are not exact."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation


def to_decimal(value: object, field: str) -> Decimal:
    """Return ``value`` as a finite Decimal; accepts Decimal, int and numeric strings.

    Floats are refused: 0.1 + 0.2 is not 0.3, and a price that is off by a fraction of
    a paisa fails the exchange's tick check or misstates P&L.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be a Decimal, int or numeric string, not bool")
    if isinstance(value, float):
        raise ValueError(
            f"{field}: floats are not accepted for money ({value!r}); "
            f"pass Decimal('{value}') or the string '{value}'"
        )
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{field}: {value!r} is not a number") from None
    else:
        raise ValueError(
            f"{field}: must be a Decimal, int or numeric string, not {type(value).__name__}"
        )
    if not result.is_finite():
        raise ValueError(f"{field}: must be finite, got {result}")
    return result


# Average prices are kept to 8 places, the precision the database stores, so a value
# read back after a restart is the value that was in memory.
AVERAGE_PRICE_PLACES = Decimal("0.00000001")


CENTS = Decimal("0.01")


def natural(value: Decimal) -> Decimal:
    """``value`` at the scale a trader reads it: at least two places, and no trailing
    zeros beyond them (1520.50000000 -> 1520.50, 0E-8 -> 0.00, 0.00250000 -> 0.0025).
    Equal to ``value``; only its exponent changes."""
    if not value.is_finite() or value.adjusted() > 20:
        return value  # nothing a trader reads; and quantize would overflow the context
    reduced = value.normalize()
    if reduced.as_tuple().exponent >= -2:  # type: ignore[operator]
        return value.quantize(CENTS)
    return reduced


def average(total_value: Decimal, quantity: int) -> Decimal:
    return natural((total_value / quantity).quantize(AVERAGE_PRICE_PLACES))


def parse_money(value: object, field: str) -> Decimal:
    """Placeholder until the request-rules branch lands: floats by their shortest repr."""
    if isinstance(value, float):
        value = repr(value)
    return to_decimal(value, field)
