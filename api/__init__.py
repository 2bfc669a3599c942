"""The OMS as a service: an authenticated HTTP and WebSocket API (``api.app``), served
in the OMS's process (``api.service``), and a thin Python client for it (``api.client``).

Every command reaches the supervisor through the same ``OMS`` handle (and so the same
messages) that in-process callers use; nothing here talks to the broker or writes an
order row.
"""
