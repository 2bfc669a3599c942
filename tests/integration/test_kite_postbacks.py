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
