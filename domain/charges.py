"""What Zerodha and the government charge on a fill: brokerage, STT/CTT, exchange
transaction charge, SEBI fee, stamp duty and GST.

Pure arithmetic on exact Decimals. The rates live in one dated table (`ZERODHA_RATES`);
pass another `RateCard` when Zerodha changes them. Components are never rounded: a
contract note rounds, we keep the exact figure so that charges split over partial fills
add up to the charges of the whole order.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from enum import Enum
from types import MappingProxyType

from domain.enums import Exchange, Product, Side
from domain.money import to_decimal
from domain.ticks import is_option

ZERO = Decimal(0)
_CRORE_EXPONENT = 7  # 1 crore = 10**7 rupees
# Plenty of digits for exact products of paisa prices, lot quantities and rates down to
# 0.0001%, whatever precision the caller's thread context happens to have.
_EXACT = Context(prec=60)


@dataclass(frozen=True, slots=True)
class Charges:
    """The charges on one fill (or a sum of fills), component by component, in rupees."""

    brokerage: Decimal
    stt: Decimal  # STT for securities; CTT for commodities
    exchange_charge: Decimal
    sebi_fee: Decimal
    stamp_duty: Decimal
    gst: Decimal

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, Decimal):
                raise TypeError(
                    f"Charges.{f.name} must be a Decimal, got {type(value).__name__} {value!r}"
                )
            if not value.is_finite():
                raise ValueError(f"Charges.{f.name} must be finite, got {value}")

    @property
    def total(self) -> Decimal:
        with localcontext(_EXACT):
            return (
                self.brokerage
                + self.stt
                + self.exchange_charge
                + self.sebi_fee
                + self.stamp_duty
                + self.gst
            )

    def as_dict(self) -> dict[str, str]:
        """Each component's name mapped to its exact decimal string, plus ``"total"``."""
        result = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        result["total"] = str(self.total)
        return result

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> "Charges":
        """The inverse of `as_dict`. ``"total"`` is ignored (it is derived); a missing or
        unknown component is refused, as is a float."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"charges: missing component(s) {missing} in {dict(d)!r}")
        unknown = sorted(set(d) - set(names) - {"total"})
        if unknown:
            raise ValueError(f"charges: unknown component(s) {unknown} in {dict(d)!r}")
        return cls(**{n: to_decimal(d[n], f"charges.{n}") for n in names})

    def rounded(self, places: Decimal = Decimal("0.00000001")) -> "Charges":
        """Each component rounded to ``places`` (the precision the database stores),
        so that a total read back after a restart is the total that was in memory."""
        return Charges(**{f.name: getattr(self, f.name).quantize(places, ROUND_HALF_UP) for f in fields(self)})

    @classmethod
    def zero(cls) -> "Charges":
        return cls(ZERO, ZERO, ZERO, ZERO, ZERO, ZERO)

    def __add__(self, other: "Charges") -> "Charges":
        if not isinstance(other, Charges):
            return NotImplemented
        with localcontext(_EXACT):
            return Charges(
                brokerage=self.brokerage + other.brokerage,
                stt=self.stt + other.stt,
                exchange_charge=self.exchange_charge + other.exchange_charge,
                sebi_fee=self.sebi_fee + other.sebi_fee,
                stamp_duty=self.stamp_duty + other.stamp_duty,
                gst=self.gst + other.gst,
            )


class Segment(str, Enum):
    EQUITY_DELIVERY = "EQUITY_DELIVERY"
    EQUITY_INTRADAY = "EQUITY_INTRADAY"
    FUTURES = "FUTURES"
    OPTIONS = "OPTIONS"
    CURRENCY_FUTURES = "CURRENCY_FUTURES"
    CURRENCY_OPTIONS = "CURRENCY_OPTIONS"
    COMMODITY_FUTURES = "COMMODITY_FUTURES"
    COMMODITY_OPTIONS = "COMMODITY_OPTIONS"


def _is_option_symbol(exchange: Exchange, symbol: str) -> bool:
    # domain.ticks.is_option only knows the equity-derivative exchanges (NFO/BFO); the
    # same CE/PE suffix rule names options on CDS and MCX.
    if exchange in (Exchange.NFO, Exchange.BFO):
        return is_option(exchange, symbol)
    return symbol.endswith(("CE", "PE"))


def segment_of(exchange: Exchange, symbol: str, product: Product) -> Segment:
    """The charges segment of an instrument traded under ``product``.

    Cash market (NSE/BSE): MIS is intraday, CNC and NRML are delivery. Derivatives
    exchanges: a symbol ending CE/PE is an option, anything else a future; the product
    does not matter there.
    """
    if exchange in (Exchange.NSE, Exchange.BSE):
        if product is Product.MIS:
            return Segment.EQUITY_INTRADAY
        if product in (Product.CNC, Product.NRML):
            return Segment.EQUITY_DELIVERY
        raise ValueError(f"no charges segment for product {product!r} on {exchange.value}")
    option = _is_option_symbol(exchange, symbol)
    if exchange in (Exchange.NFO, Exchange.BFO):
        return Segment.OPTIONS if option else Segment.FUTURES
    if exchange is Exchange.CDS:
        return Segment.CURRENCY_OPTIONS if option else Segment.CURRENCY_FUTURES
    if exchange is Exchange.MCX:
        return Segment.COMMODITY_OPTIONS if option else Segment.COMMODITY_FUTURES
    raise ValueError(f"no charges segment for exchange {exchange!r}")


@dataclass(frozen=True, slots=True)
class SegmentRates:
    """One segment's rates. Every ``*_pct`` is a percentage: ``Decimal("0.03")`` is 0.03%.

    Brokerage is either flat per executed order (``brokerage_flat``) or ``brokerage_pct``
    of the order's value, capped at ``brokerage_cap`` per order when a cap is given.
    ``stt_*`` holds CTT for commodities. Stamp duty is charged on buys only.
    """

    brokerage_pct: Decimal
    brokerage_cap: Decimal | None
    brokerage_flat: Decimal | None
    stt_buy_pct: Decimal
    stt_sell_pct: Decimal
    exchange_pct: Decimal
    sebi_per_crore: Decimal
    stamp_buy_pct: Decimal
    gst_pct: Decimal

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("brokerage_cap", "brokerage_flat"):
                continue
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(
                    f"SegmentRates.{f.name} must be a finite Decimal >= 0, got {value!r}"
                )
        if self.brokerage_flat is not None and (
            self.brokerage_pct != 0 or self.brokerage_cap is not None
        ):
            raise ValueError(
                "SegmentRates: brokerage is either flat per order or a capped percentage, "
                f"not both (flat {self.brokerage_flat}, pct {self.brokerage_pct}, "
                f"cap {self.brokerage_cap})"
            )


@dataclass(frozen=True, slots=True)
class RateCard:
    """A complete, dated table of rates: where the numbers came from and when."""

    as_of: date
    source: str
    segments: Mapping[Segment, SegmentRates]


_SEBI = Decimal("10")  # ₹10 per crore, every segment
_GST = Decimal("18")  # 18% of (brokerage + SEBI fee + exchange transaction charge)
_TWENTY = Decimal("20")

ZERODHA_RATES = RateCard(
    as_of=date(2026, 11, 1),
    source=(
        "shared/ZERODHA.md 'Charges' (equity, NSE; late 2026 as best known); currency and "
        "commodity rows are best-known values, to verify against zerodha.com/charges"
    ),
    segments=MappingProxyType(
        {
            # --- From ZERODHA.md (NSE rates; BSE/BFO transaction charges differ and are
            # not modelled separately: verify before relying on BSE figures). ---
            Segment.EQUITY_DELIVERY: SegmentRates(
                brokerage_pct=ZERO, brokerage_cap=None, brokerage_flat=None,
                stt_buy_pct=Decimal("0.1"), stt_sell_pct=Decimal("0.1"),
                exchange_pct=Decimal("0.00297"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.015"), gst_pct=_GST,
            ),
            Segment.EQUITY_INTRADAY: SegmentRates(
                brokerage_pct=Decimal("0.03"), brokerage_cap=_TWENTY, brokerage_flat=None,
                stt_buy_pct=ZERO, stt_sell_pct=Decimal("0.025"),
                exchange_pct=Decimal("0.00297"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.003"), gst_pct=_GST,
            ),
            Segment.FUTURES: SegmentRates(  # STT 0.05% from 1 Apr 2026 (0.02% before)
                brokerage_pct=Decimal("0.03"), brokerage_cap=_TWENTY, brokerage_flat=None,
                stt_buy_pct=ZERO, stt_sell_pct=Decimal("0.05"),
                exchange_pct=Decimal("0.00173"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.002"), gst_pct=_GST,
            ),
            Segment.OPTIONS: SegmentRates(  # on premium; STT 0.15% from 1 Apr 2026
                brokerage_pct=ZERO, brokerage_cap=None, brokerage_flat=_TWENTY,
                stt_buy_pct=ZERO, stt_sell_pct=Decimal("0.15"),
                exchange_pct=Decimal("0.03503"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.003"), gst_pct=_GST,
            ),
            # --- Best-known values, NOT in ZERODHA.md: verify before trading. ---
            Segment.CURRENCY_FUTURES: SegmentRates(
                brokerage_pct=Decimal("0.03"), brokerage_cap=_TWENTY, brokerage_flat=None,
                stt_buy_pct=ZERO, stt_sell_pct=ZERO,
                exchange_pct=Decimal("0.00035"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.0001"), gst_pct=_GST,
            ),
            Segment.CURRENCY_OPTIONS: SegmentRates(
                brokerage_pct=ZERO, brokerage_cap=None, brokerage_flat=_TWENTY,
                stt_buy_pct=ZERO, stt_sell_pct=ZERO,
                exchange_pct=Decimal("0.0311"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.0001"), gst_pct=_GST,
            ),
            Segment.COMMODITY_FUTURES: SegmentRates(  # stt_* holds CTT; MCX rates
                brokerage_pct=Decimal("0.03"), brokerage_cap=_TWENTY, brokerage_flat=None,
                stt_buy_pct=ZERO, stt_sell_pct=Decimal("0.01"),
                exchange_pct=Decimal("0.0021"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.002"), gst_pct=_GST,
            ),
            Segment.COMMODITY_OPTIONS: SegmentRates(  # stt_* holds CTT; on premium
                brokerage_pct=ZERO, brokerage_cap=None, brokerage_flat=_TWENTY,
                stt_buy_pct=ZERO, stt_sell_pct=Decimal("0.05"),
                exchange_pct=Decimal("0.0418"), sebi_per_crore=_SEBI,
                stamp_buy_pct=Decimal("0.003"), gst_pct=_GST,
            ),
        }
    ),
)


def _percent_of(value: Decimal, pct: Decimal) -> Decimal:
    return value * pct.scaleb(-2)


def _order_brokerage(order_value: Decimal, rates: SegmentRates) -> Decimal:
    """Brokerage on an executed order of total ``order_value`` (percentage segments)."""
    if order_value == 0:
        return ZERO
    brokerage = _percent_of(order_value, rates.brokerage_pct)
    if rates.brokerage_cap is not None:
        brokerage = min(brokerage, rates.brokerage_cap)
    return brokerage


def _fill_brokerage(value: Decimal, prior_filled_value: Decimal, rates: SegmentRates) -> Decimal:
    if rates.brokerage_flat is not None:
        # Flat per executed order: the order's first fill carries all of it.
        return rates.brokerage_flat if prior_filled_value == 0 else ZERO
    # Percentage (possibly capped) of the whole order: this fill pays the increase, so
    # an order's fills always add up to the brokerage on its total value.
    return _order_brokerage(prior_filled_value + value, rates) - _order_brokerage(
        prior_filled_value, rates
    )


def charges_for_fill(
    exchange: Exchange,
    symbol: str,
    product: Product,
    side: Side,
    quantity: int,
    price: Decimal,
    prior_filled_value: Decimal = ZERO,
    rates: RateCard = ZERODHA_RATES,
) -> Charges:
    """The charges on one fill of ``quantity`` at ``price``, exact and unrounded.

    ``prior_filled_value`` is the value (price x quantity) already filled on the same
    order before this fill; it decides how much of the per-order brokerage this fill
    carries. Every other component is proportional to this fill's value. For options,
    ``price`` is the premium, so the charges are on premium turnover.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"charges: quantity must be a positive int, got {quantity!r}")
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise ValueError(f"charges: price must be a positive finite Decimal, got {price!r}")
    if (
        not isinstance(prior_filled_value, Decimal)
        or not prior_filled_value.is_finite()
        or prior_filled_value < 0
    ):
        raise ValueError(
            f"charges: prior_filled_value must be a Decimal >= 0, got {prior_filled_value!r}"
        )
    segment = segment_of(exchange, symbol, product)
    segment_rates = rates.segments.get(segment)
    if segment_rates is None:
        raise ValueError(
            f"charges: rate card '{rates.source}' ({rates.as_of}) has no rates for "
            f"{segment.value} ({exchange.value}:{symbol} {product.value})"
        )
    with localcontext(_EXACT):
        value = price * quantity
        brokerage = _fill_brokerage(value, prior_filled_value, segment_rates)
        stt_pct = segment_rates.stt_buy_pct if side is Side.BUY else segment_rates.stt_sell_pct
        stt = _percent_of(value, stt_pct)
        exchange_charge = _percent_of(value, segment_rates.exchange_pct)
        sebi_fee = value * segment_rates.sebi_per_crore.scaleb(-_CRORE_EXPONENT)
        stamp_duty = _percent_of(value, segment_rates.stamp_buy_pct) if side is Side.BUY else ZERO
        gst = _percent_of(brokerage + sebi_fee + exchange_charge, segment_rates.gst_pct)
        return Charges(
            brokerage=brokerage,
            stt=stt,
            exchange_charge=exchange_charge,
            sebi_fee=sebi_fee,
            stamp_duty=stamp_duty,
            gst=gst,
        )
