"""The log as JSON lines (observability/logs.py): one object a line, with the order and the
strategy where they apply, and no secret in any line."""
from __future__ import annotations

import io
import json
import logging

import pytest

from observability.logs import JsonFormatter, RedactingFilter, configure_logging, order_context, redact, redacted


@pytest.fixture
def captured():
    """A logger whose records go through the filter and the JSON formatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("oms.test_json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_a_line_with_its_order_and_strategy(captured):
    logger, stream = captured
    logger.warning("order %s: fill\nof 10", 42, extra={"order_id": 42, "strategy_id": 7, "broker_order_id": "X1"})
    logger.info("nothing about an order")
    first, second = lines(stream)
    assert first["message"] == "order 42: fill\nof 10"
    assert (first["level"], first["logger"], first["order_id"], first["strategy_id"]) == ("WARNING", "oms.test_json_logs", 42, 7)
    assert first["broker_order_id"] == "X1"
    assert first["ts"].endswith("+00:00")
    assert "order_id" not in second and "strategy_id" not in second


def test_a_line_logged_while_a_tracker_works_names_its_order(captured):
    logger, stream = captured
    token = order_context.set((1234, 5))
    try:
        logger.error("the broker said no")
    finally:
        order_context.reset(token)
    (line,) = lines(stream)
    assert (line["order_id"], line["strategy_id"]) == (1234, 5)


def test_an_exception_is_kept_in_its_line(captured):
    logger, stream = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("handling failed")
    (line,) = lines(stream)
    assert "RuntimeError: boom" in line["exception"] and "Traceback" in line["exception"]


def test_registered_secrets_never_reach_a_line_not_even_through_a_traceback(captured):
    logger, stream = captured
    redact("enc-token-9f8e7d6c5b4a")
    logger.warning("calling with %s", "enc-token-9f8e7d6c5b4a")
    try:
        raise ValueError("bad token enc-token-9f8e7d6c5b4a")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    assert "enc-token-9f8e7d6c5b4a" not in text
    assert text.count("***") >= 2


@pytest.mark.parametrize("leaky, kept", [
    ("Authorization: token kitekey123:accesstok456", "Authorization: ***"),
    ("header token kitekey123:accesstok456 sent", "header token *** sent"),
    ("GET /session?access_token=abc123def&x=1", "GET /session?access_token=***&x=1"),
    ("api_secret='s3cr3t-value'", "api_secret='***'"),
    ('{"password": "hunter22"}', '{"password": "***"}'),
    ("postgresql+psycopg://oms:pa55word@db:5432/oms", "postgresql+psycopg://oms:***@db:5432/oms"),
    ("POST https://api.telegram.org/bot123456:AAHsecret-token_x/sendMessage", "POST https://api.telegram.org/bot***/sendMessage"),
    ("key oms_k3yW1thEnoughCharacters99 used", "key *** used"),
])
def test_anything_shaped_like_a_credential_is_hidden(leaky, kept):
    assert redacted(leaky) == kept


def test_short_values_are_not_taken_for_secrets():
    redact("abc", None, "")
    assert redacted("abc is a word") == "abc is a word"


def test_configure_logging_installs_one_handler_and_replaces_its_own():
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    try:
        first = configure_logging("INFO", "text", stream=stream)
        second = configure_logging("INFO", "json", stream=stream, secrets=["configured-secret-42"])
        assert first not in root.handlers and second in root.handlers
        anything = logging.getLogger("oms.anything")
        anything.setLevel(logging.INFO)  # whatever level another test left on "oms"
        anything.info("using configured-secret-42")
        (line,) = lines(stream)
        assert line["message"] == "using ***"
    finally:
        root.removeHandler(second)
        root.setLevel(level)
    with pytest.raises(ValueError, match="text or json"):
        configure_logging("INFO", "xml")
