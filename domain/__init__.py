"""The shop's rules: aggregates, their events, value objects and domain errors.

Pure Python: nothing here does I/O or knows about HTTP or SQL.
"""
