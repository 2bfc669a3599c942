"""The ``oms`` console script: one entry point, one module per group of commands."""
