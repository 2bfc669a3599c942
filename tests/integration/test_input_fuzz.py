"""Any input through the public API is either refused with a ValueError that names the
field, or stored exactly as given; a pre-trade check may refuse it (and that refusal is
recorded). Whatever the input, no actor dies and trading goes on for everyone else."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import start_oms
from actors.supervisor import HealthState
from domain.enums import OrderStatus as S
from domain.errors import OrderNotCancellable, OrderRejected
from domain.order_request import OrderRequest
from tests.oms_helpers import buy, rows, wait_for

D = Decimal

money = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["1E+999999", "9E+999998", "-1", "0", "1500.05", "1500.0500000001", "abc", "", "1e-12"]),
    st.decimals(min_value=D("0.05"), max_value=D("99999999999.95"), places=2),
)
quantities = st.one_of(st.integers(min_value=-5, max_value=2**64), st.sampled_from([1, 2**31 - 1, 2**31, 10**12]))
metadata = st.one_of(
    st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False)), max_size=4),
    st.just({"x": "\x00"}),
    st.just({"big": "y" * 70_000}),
)


def test_any_request_is_refused_by_name_or_stored_exactly_and_trading_goes_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'oms.db'}"
    handle = start_oms(database_url=url, broker="paper", capital=D("100000000"), require_stop_loss=False)
    try:
        handle.paper.set_price("INFY", D("1500.00"))

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(price=money, stop_loss=money, quantity=quantities, meta=metadata)
        def any_request(price, stop_loss, quantity, meta):
            refused_or_stored(handle, url, price, stop_loss, quantity, meta)

        any_request()

        assert handle.health().state is HealthState.RUNNING
        placed = handle.place_order(buy("INFY", 1))
        assert wait_for(handle, placed.order_id, lambda o: o.status is S.FILLED).filled_quantity == 1
    finally:
        handle.stop()


def refused_or_stored(handle, url, price, stop_loss, quantity, meta) -> None:
    try:
        request = OrderRequest(
            symbol="INFY", side="BUY", quantity=quantity, order_type="LIMIT", price=price,
            stop_loss=stop_loss, tick_size=D("0.01") if price is not None else None, metadata=meta,
        )
    except ValueError as refused:
        text = str(refused)
        assert any(name in text for name in ("price", "stop_loss", "quantity", "metadata", "tick_size")), text
        return
    try:
        result = handle.place_order(request)
    except OrderRejected as refused:
        assert refused.failed_check and refused.reason
        [row] = rows(url, "SELECT status FROM orders WHERE id = :i", i=refused.order_id)
        assert row["status"] == "REJECTED"  # the refusal is recorded
        return
    [row] = rows(url, "SELECT price, stop_loss, quantity FROM orders WHERE id = :i", i=result.order_id)
    assert D(str(row["price"])) == request.price
    assert row["stop_loss"] is None or D(str(row["stop_loss"])) == request.stop_loss
    assert row["quantity"] == request.quantity
    try:  # keep the book small: a resting order is cancelled
        handle.cancel_order(result.order_id)
    except OrderNotCancellable:
        pass  # it filled first
