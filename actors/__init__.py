"""The OMS's actors and the function that starts them all."""
from actors.oms import OMS, OMSTimeout, start_oms
from actors.settings import OMSSettings

__all__ = ["OMS", "OMSSettings", "OMSTimeout", "start_oms"]
