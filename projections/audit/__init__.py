"""The auditors' reader of the event log: histories, time travel, export, tamper evidence.

It reads the stored events themselves (never the read models), with the log's recorder
and mapper, and imports nothing from the write side. Use
``eventshop.bootstrap.open_auditor`` to get an :class:`~projections.audit.auditor.Auditor`
(it creates the checkpoints table once; reading never runs DDL).

- ``auditor``: the Auditor: pages of the log with filters, histories, state at a version
  or a time, export, and digest / verify / checkpoint.
- ``chain``: the SHA-256 hash chain and its values (Checkpoint, Digest, Verification),
  and reading an export back into stored events.
- ``checkpoints``: the per-store table of kept chain heads (PostgreSQL, SQLite, memory).
- ``aggregate_events``: one aggregate's stored events with their log positions.
"""
