"""The OMS's actors and the function that starts them all."""
from actors.oms import OMS, OMSStopped, OMSTimeout, start_oms
from actors.settings import OMSSettings

__all__ = ["OMS", "OMSSettings", "OMSStopped", "OMSTimeout", "start_oms"]
