"""The tag an order carries to the broker: how the broker's copy is found again.

Kite keeps up to 20 alphanumeric characters in an order's ``tag``. Ours is the
database's prefix (capital letters, random per database) followed by the order id in
decimal, so two databases can never both claim one broker order, and the id can be read
back from any tag we wrote.
"""
from __future__ import annotations

import re

MAX_TAG_LENGTH = 20
_TAG = re.compile(r"([A-Z]{1,10})([0-9]{1,10})")


def broker_tag(prefix: str, order_id: int) -> str:
    tag = f"{prefix}{order_id}"
    if not _TAG.fullmatch(tag) or len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"tag: {tag!r} is not a prefix of capital letters and an order id within {MAX_TAG_LENGTH} characters")
    return tag


def order_id_in_tag(prefix: str, tag: str | None) -> int | None:
    """The order id a tag of ours carries, or None when the tag is not ours."""
    match = _TAG.fullmatch(tag or "")
    if match is None or match.group(1) != prefix:
        return None
    return int(match.group(2))
