"""Broker implementations behind the domain.broker.Broker interface."""
from actors.brokers.paper import PaperExchange

__all__ = ["PaperExchange"]
