"""Benchmarks of the OMS: throughput, latency, resting orders and recovery."""
