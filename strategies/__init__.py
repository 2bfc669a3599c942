"""Strategies that trade through the OMS by message (the commands and events of
``actors.trading``), and the paper-trading demo built on one of them."""
