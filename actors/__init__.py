"""The OMS's actors, the function that starts them all, and the messages a strategy
that is an actor trades with (see ``actors.trading``)."""
from actors.oms import OMS, OMSStopped, OMSTimeout, start_oms
from actors.settings import OMSSettings
from actors.supervisor import TradingState
from actors.trading import (
    CancelAccepted,
    CancelOrder,
    ModifyAccepted,
    ModifyOrder,
    OrderAccepted,
    OrderChanged,
    OrderFilled,
    OrderRefused,
    PlaceOrder,
    Subscribe,
)

__all__ = [
    "OMS",
    "CancelAccepted",
    "CancelOrder",
    "ModifyAccepted",
    "ModifyOrder",
    "OMSSettings",
    "OMSStopped",
    "OMSTimeout",
    "OrderAccepted",
    "OrderChanged",
    "OrderFilled",
    "OrderRefused",
    "PlaceOrder",
    "Subscribe",
    "TradingState",
    "start_oms",
]
