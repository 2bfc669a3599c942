"""Persistence: tables, migrations and the Store the journal actor writes through.

This package speaks tables, not rules: it stores and reloads domain values exactly
(Decimal money, tz-aware UTC timestamps, enums) and makes no business decisions.
"""
