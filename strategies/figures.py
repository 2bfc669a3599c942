"""Numbers as a trader reads them: 1520.50 and 0.00, never 1520.50000000 or 0E-8.

Money is Decimal from end to end; nothing here goes through float.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENTS = Decimal("0.01")
FOUR_PLACES = Decimal("0.0001")


def money(value: Decimal | None, places: int = 2, sign: bool = False) -> str:
    """``value`` rounded half-up to ``places`` with Indian digit grouping (12,34,567.50);
    ``sign`` puts a + before a positive amount (P&L)."""
    if value is None:
        return "-"
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    if len(whole) > 3:  # lakhs and crores: the last three digits, then pairs
        head, groups = whole[:-3], [whole[-3:]]
        while head:
            groups.insert(0, head[-2:])
            head = head[:-2]
        whole = ",".join(groups)
    prefix = "-" if rounded < 0 else ("+" if sign and rounded > 0 else "")
    return prefix + whole + ("." + fraction if fraction else "")


def price(value: Decimal | None) -> str:
    """A price: two decimals, up to four when it has them (an average price may)."""
    if value is None:
        return "-"
    value = Decimal(value)
    if value == value.quantize(CENTS):
        return f"{value.quantize(CENTS):f}"
    return f"{value.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP).normalize():f}"


def signed_qty(quantity: int) -> str:
    """A position's quantity: +40 long, -40 short, 0 flat."""
    return f"{quantity:+d}" if quantity else "0"
