"""Value objects that hold JSON-like data are immutable all the way down: nothing a
caller receives can change the OMS's state or what another caller sees."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from domain.enums import OrderStatus
from domain.frozen import FrozenDocument, compact, freeze, thaw
from domain.order import Order, OrderEvent, created, transition
from domain.order_request import OrderRequest

NOW = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)


def an_order(**metadata) -> Order:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=Decimal("1500"), metadata=metadata)
    return Order.from_request(1, request, NOW, {"passed": True, "checks": [{"name": "balance", "passed": True}]})


def test_an_orders_validation_result_and_metadata_refuse_changes_at_every_depth() -> None:
    order = an_order(legs={"entry": [1, 2]})

    with pytest.raises(TypeError):
        order.validation_result["passed"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        order.validation_result["checks"][0]["passed"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        order.metadata["legs"]["entry"] = []  # type: ignore[index]
    assert order.metadata["legs"]["entry"] == (1, 2)


def test_the_dict_a_caller_built_the_order_from_stays_the_callers_own() -> None:
    result = {"passed": True, "checks": [{"name": "balance", "passed": True}]}
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1)
    order = Order.from_request(1, request, NOW, result)

    result["checks"][0]["passed"] = False

    assert order.validation_result["checks"][0]["passed"] is True


def test_events_freeze_their_payload_and_transitions_keep_values_frozen() -> None:
    pending, event = created(an_order(note="x"))
    submitted, sent = transition(pending, OrderStatus.SUBMITTED, NOW, {"by": ["ack"]})

    with pytest.raises(TypeError):
        event.payload["validation_result"] = {}  # type: ignore[index]
    assert sent.payload["by"] == ("ack",)  # a tuple: nothing to append to
    assert submitted.metadata is pending.metadata  # already frozen: shared, never copied again


def test_thaw_gives_a_plain_mutable_copy_equal_to_the_original_data() -> None:
    data = {"a": [1, {"b": "c"}], "d": None}

    frozen = freeze(data)
    plain = thaw(frozen)

    assert plain == data and plain is not data
    plain["a"].append(2)
    assert frozen["a"] == (1, {"b": "c"})


def test_an_event_built_from_a_mutable_payload_is_not_changed_through_it() -> None:
    payload = {"trade_id": "T1", "nested": {"q": 1}}
    event = OrderEvent(1, NOW, OrderStatus.OPEN, OrderStatus.OPEN, payload)

    payload["nested"]["q"] = 99

    assert event.payload["nested"]["q"] == 1


def test_a_validation_result_is_kept_as_text_yet_reads_as_the_document_it_was() -> None:
    document = {"passed": True, "entry_price": "1500.5", "checks": [{"name": "balance", "passed": True, "n": 3}]}
    kept = compact(document)
    assert isinstance(kept, FrozenDocument)
    assert kept == document and document == kept and set(kept) == set(document)
    assert kept["checks"][0]["name"] == "balance" and kept.get("missing") is None
    assert thaw(kept) == document and len(kept) == 3
    with pytest.raises(TypeError):
        kept["passed"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        kept["checks"][0]["passed"] = False  # type: ignore[index]
    assert compact(kept) is kept and freeze(kept) is kept


def test_a_long_validation_result_read_back_is_kept_deflated_in_a_fraction_of_its_text() -> None:
    checks = [{"name": f"check_{n}", "passed": True, "reason": f"check {n} within the configured limit", "limit": "none"}
              for n in range(18)]
    document = {"passed": True, "entry_price": "1500.50", "checks": checks}
    text = json.dumps(document, separators=(",", ":"))
    kept = FrozenDocument(text, squeeze=True)  # as the database's reads make it
    assert isinstance(kept, FrozenDocument) and kept.text == text  # what the JSON column stores, exactly
    assert kept == document and kept["checks"][17]["reason"] == "check 17 within the configured limit"
    assert sys.getsizeof(kept._kept) * 2 < sys.getsizeof(text)  # held in under half the memory
    assert compact({"passed": True}).text == '{"passed":true}'  # a short one stays text
    assert FrozenDocument(text) == kept


def test_a_validation_result_is_kept_in_a_few_hundred_bytes_and_outlives_a_new_preset(monkeypatch) -> None:
    import domain.frozen as frozen
    from domain.risk import Account, Exposure, RiskLimits, validate_order

    request = OrderRequest(symbol="RELIANCE", side="SELL", quantity=7, order_type="MARKET", stop_loss=Decimal("2600"), product="CNC")
    result = validate_order(request, Decimal("2450.50"), Exposure(), Account(), RiskLimits(capital=Decimal("500000"))).as_dict()
    text = json.dumps(result, separators=(",", ":"))
    kept = FrozenDocument(text, squeeze=True)
    assert len(text) > 1500 and len(kept._kept) < 400  # against the typical result domain.risk presets
    assert compact(result)._kept == text  # a new order's is not deflated: zlib would cost the order flow the GIL
    monkeypatch.setattr(frozen, "_preset", b"")
    frozen.use_preset('{"something":"else entirely"}')
    assert kept.text == text and FrozenDocument(text, squeeze=True).text == text  # made before or after, each reads back


def test_a_result_in_postgresqls_jsonb_form_is_kept_as_small_as_in_its_compact_form() -> None:
    """PostgreSQL hands jsonb back reordered (keys by length, then bytes) and spaced; a
    restart keeps every live order's result in that form, so it must deflate as well."""
    from domain.risk import Account, Exposure, RiskLimits, _jsonb_order, validate_order

    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=Decimal("1300.00"), stop_loss=Decimal("1290.00"))
    result = validate_order(request, Decimal("1300.00"), Exposure(), Account(), RiskLimits(capital=Decimal("1000000"))).as_dict()
    compact_text = json.dumps(result, separators=(",", ":"))
    jsonb_text = json.dumps(_jsonb_order(result))
    as_written, as_read_back = FrozenDocument(compact_text, squeeze=True), FrozenDocument(jsonb_text, squeeze=True)
    assert len(jsonb_text) > 2000 and len(as_read_back._kept) < 160 and len(as_written._kept) < 160
    assert as_read_back.text == jsonb_text and as_read_back == as_written


def test_a_document_that_json_would_change_is_frozen_as_objects_instead() -> None:
    for document in ({"price": Decimal("1.5")}, {1: "one"}):
        kept = compact(document)
        assert not isinstance(kept, FrozenDocument)
        assert dict(kept) == document
    assert not isinstance(compact({"x": float("nan")}), FrozenDocument)


def test_an_order_made_from_the_validators_result_keeps_the_same_text_as_from_its_dict() -> None:
    from domain.risk import Account, Exposure, RiskLimits, validate_order

    for managed in (True, False):
        request = OrderRequest(symbol="INFY", side="BUY", quantity=2, order_type="LIMIT", price=Decimal("1500"),
                               stop_loss=Decimal("1490"), managed_exits=managed)
        result = validate_order(request, Decimal("1500"), Exposure(), Account(), RiskLimits(capital=Decimal("1000000")))

        from_result = Order.from_request(7, request, NOW, result)
        from_dict = Order.from_request(7, request, NOW, result.as_dict())

        assert from_result == from_dict
        assert type(from_result.validation_result) is FrozenDocument
        assert from_result.validation_result.text == from_dict.validation_result.text  # type: ignore[union-attr]
        assert from_result.risk_amount == Decimal("20")  # (1500 - 1490) x 2: the checked entry
        assert ("managed_exits" in from_result.validation_result) is (not managed)
