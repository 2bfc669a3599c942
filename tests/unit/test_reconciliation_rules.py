"""Reconciliation's rules, as pure functions: what each difference is called, what the
correction keeps, which delivery positions Kite no longer lists, and the report's shape
(the guide's dict)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from domain import Exchange, Product
from domain.broker import BrokerPosition
from domain.position import Position
from domain.reconciliation import Difference, IssueType, carried_delivery, corrected, differences, report

D = Decimal
AT = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)  # 11:30 in India
RELIANCE = (Exchange.NSE, "RELIANCE", Product.MIS)
INFY = (Exchange.NSE, "INFY", Product.MIS)
TCS = (Exchange.NSE, "TCS", Product.NRML)


def ours(key, quantity, average="100", **fields) -> Position:
    return Position(*key, quantity=quantity, average_price=D(average), **fields)


def theirs(key, quantity, average="100") -> BrokerPosition:
    return BrokerPosition(*key, quantity=quantity, average_price=D(average))


def test_each_kind_of_difference_is_named_as_the_guide_names_it():
    found = differences(
        {RELIANCE: ours(RELIANCE, 10), TCS: ours(TCS, -5), INFY: ours(INFY, 0)},
        {RELIANCE: theirs(RELIANCE, 8), INFY: theirs(INFY, 3, "1500")},
    )
    assert [(d.symbol, d.issue_type, d.internal_quantity, d.broker_quantity) for d in found] == [
        ("INFY", IssueType.UNKNOWN_POSITION, 0, 3),
        ("RELIANCE", IssueType.QUANTITY_MISMATCH, 10, 8),
        ("TCS", IssueType.PHANTOM_POSITION, -5, 0),
    ]
    assert differences({RELIANCE: ours(RELIANCE, 4)}, {RELIANCE: theirs(RELIANCE, 4, "999")}) == []


def test_a_correction_keeps_booked_pnl_and_takes_the_brokers_average():
    before = ours(RELIANCE, 10, "100", realized_pnl=D("50"), charges=D("3"), opened_at=AT, stop_loss=D("95"))
    after = corrected(before, Difference(IssueType.QUANTITY_MISMATCH, RELIANCE, 10, 8, D("101")), AT)
    assert (after.quantity, after.average_price, after.realized_pnl, after.charges) == (8, D("101"), D("50"), D("3"))
    assert (after.opened_at, after.closed_at, after.stop_loss) == (AT, None, D("95"))


def test_a_phantom_is_closed_and_loses_its_protective_prices():
    before = ours(TCS, -5, "200", stop_loss=D("210"), opened_at=AT)
    after = corrected(before, Difference(IssueType.PHANTOM_POSITION, TCS, -5, 0), AT)
    assert (after.quantity, after.average_price, after.closed_at, after.stop_loss) == (0, D(0), AT, None)


def test_a_position_flipped_by_the_broker_is_opened_anew_at_its_average():
    before = ours(INFY, 5, "100", opened_at=datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc))
    after = corrected(before, Difference(IssueType.QUANTITY_MISMATCH, INFY, 5, -2, D("105")), AT)
    assert (after.quantity, after.average_price, after.opened_at) == (-2, D("105"), AT)
    unknown = corrected(None, Difference(IssueType.UNKNOWN_POSITION, INFY, 0, 3, D("1500")), AT)
    assert (unknown.quantity, unknown.average_price, unknown.last_price, unknown.opened_at) == (3, D("1500"), D("1500"), AT)


@pytest.mark.parametrize(("opened", "product", "carried"), [
    (datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc), Product.CNC, True),  # yesterday in India
    (datetime(2026, 11, 29, 19, 0, tzinfo=timezone.utc), Product.CNC, False),  # 00:30 today in India
    (datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc), Product.NRML, False),  # carried forward in positions
])
def test_only_delivery_positions_from_an_earlier_indian_day_have_moved_to_holdings(opened, product, carried):
    position = Position(Exchange.NSE, "INFY", product, quantity=5, opened_at=opened)
    assert carried_delivery(position, AT) is carried


def test_the_report_reads_as_the_guides_dict_and_cannot_be_changed():
    result = report(
        AT,
        [Difference(IssueType.QUANTITY_MISMATCH, RELIANCE, 10, 8), Difference(IssueType.UNKNOWN_POSITION, INFY, 0, 3, D("1500"))],
    )
    assert result["all_clear"] is False and result.all_clear is False
    assert result["timestamp"] == "2026-11-30T06:00:00+00:00"
    (mismatch,) = result["mismatches"]
    assert dict(mismatch) == {
        "symbol": "RELIANCE", "exchange": "NSE", "product": "MIS", "internal_quantity": 10, "broker_quantity": 8,
        "difference": -2, "type": "QUANTITY_MISMATCH",
    }
    assert result["unknown_positions"][0]["broker_avg_price"] == D("1500")
    assert set(result) == {"all_clear", "mismatches", "unknown_positions", "timestamp", "deferred", "untagged_orders"}
    with pytest.raises(TypeError):
        mismatch["broker_quantity"] = 10  # type: ignore[index]
    with pytest.raises(KeyError):
        result["nope"]
    assert report(AT, [])["all_clear"] is True
