"""Seeing the OMS: its metrics (Prometheus), its alerts' sinks, and its logs as JSON."""
