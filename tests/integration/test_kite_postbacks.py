"""Kite's postbacks: taken on a loopback listener only with a valid checksum
(sha256(order_id + order_timestamp + api_secret)); forged ones are refused and logged,
and change nothing."""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import pytest

from actors.brokers import kite_parsing as parse
from actors.brokers.kite_postbacks import ForgedPostback, verified
from domain import OrderStatus
from tests.kite_helpers import SECRET, assert_no_credentials, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

S = OrderStatus


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def post(url: str, body) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()  # amounts as text
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def postback_of(order: dict, secret: str = SECRET) -> dict:
    """What Kite would post for ``order``: the order, plus its checksum."""
    body = dict(order)
    body.update(user_id="EM0001", app_id=1, unfilled_quantity=order["quantity"] - order["filled_quantity"])
    body["checksum"] = parse.postback_checksum(str(body["order_id"]), str(body["order_timestamp"]), secret)
    return body


def test_a_signed_postback_updates_the_order_and_a_forged_one_is_refused(emulator, sqlite_url, caplog):
    caplog.set_level(logging.DEBUG)
    # Polling every 30 s: whatever arrives sooner came by postback.
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=30, kite_postback_port=0)
    try:
        url = oms.postback_url
        assert url.startswith("http://127.0.0.1:") and url.endswith("/kite/postback")
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        emulator.book.cancel("regular", placed.broker_order_id)  # cancelled at Kite, say from Kite's own app
        (at_kite,) = emulator.book.orders_tagged(oms.get_order_status(placed.order_id).tag)
        assert at_kite["status"] == "CANCELLED"

        forged = postback_of(at_kite, secret="not-the-secret")
        assert post(url, forged) == 403
        assert post(url, dict(postback_of(at_kite), checksum="0" * 64)) == 403
        assert post(url, b"not json") == 400
        assert post(url.replace("/kite/postback", "/elsewhere"), postback_of(at_kite)) == 404
        assert oms.get_order_status(placed.order_id).status is S.OPEN  # nothing forged got through
        assert "refused a forged postback" in caplog.text

        assert post(url, postback_of(at_kite)) == 200
        assert wait_for(oms, placed.order_id, lambda o: o.status is S.CANCELLED, timeout=5)
    finally:
        oms.stop()
    assert_no_credentials(caplog.text)


def test_the_checksum_is_kites():
    body = {"order_id": "220303000308932", "order_timestamp": "2022-03-03 09:24:25"}
    signed = dict(body, checksum=parse.postback_checksum(body["order_id"], body["order_timestamp"], "s3cret"))
    assert verified(signed, "s3cret") is signed
    with pytest.raises(ForgedPostback, match="checksum does not match"):
        verified(signed, "other")
    with pytest.raises(ForgedPostback):
        verified(["not", "an", "object"], "s3cret")


def test_postbacks_need_the_api_secret(sqlite_url):
    from pydantic import ValidationError

    from actors import OMSSettings
    with pytest.raises(ValidationError, match="kite_postback_port needs kite_api_secret"):
        OMSSettings(broker="kite", kite_api_key="k", kite_access_token="t", kite_postback_port=0)


def test_updates_that_come_twice_late_or_never_leave_each_order_as_kite_has_it(emulator, sqlite_url):
    # Postbacks are pushed at us and polling reads the books every 0.5 s; between them an
    # update may arrive twice, after a newer one, or not at all.
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=0.5, kite_postback_port=0)
    try:
        url = oms.postback_url
        oms.mark_price("INFY", "1500")
        filling = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        dropped = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1470", product="MIS", stop_loss="1460"))
        tag = oms.get_order_status(filling.order_id).tag

        emulator.set_liquidity("INFY", 4)
        emulator.set_price("INFY", "1489")
        (partly,) = [dict(o) for o in emulator.book.orders_tagged(tag)]
        emulator.set_liquidity("INFY", 100)
        emulator.set_price("INFY", "1488")
        (complete,) = [dict(o) for o in emulator.book.orders_tagged(tag)]
        assert (partly["filled_quantity"], complete["status"]) == (4, "COMPLETE")

        # The newest first, then the older one late, then the newest again.
        for body in (complete, partly, complete):
            assert post(url, postback_of(body)) == 200
        # The other order is cancelled at Kite and its postback never comes.
        emulator.book.cancel("regular", dropped.broker_order_id)

        done = wait_for(oms, filling.order_id, lambda o: o.status is S.FILLED, timeout=10)
        assert done.filled_quantity == 10
        assert wait_for(oms, dropped.order_id, lambda o: o.status is S.CANCELLED, timeout=10)
        kite_trades = [t for t in emulator.book.trades() if t["order_id"] == filling.broker_order_id]
        ours = [t for t in oms.get_trades() if t.order_id == filling.order_id]
        assert sorted(t.trade_id for t in ours) == sorted(str(t["trade_id"]) for t in kite_trades)
        assert sum(t.quantity for t in ours) == 10
        (position,) = [p for p in oms.get_positions() if p.symbol == "INFY"]
        assert position.quantity == 10
        # The audit trail never leaves FILLED, whatever arrived after it.
        events = oms.get_order_events(filling.order_id)
        after = [e for e in events if e.from_status is S.FILLED and e.to_status is not S.FILLED]
        assert after == [] and events[-1].to_status is S.FILLED
    finally:
        oms.stop()
