"""The auditors' reader of the event log: histories, time travel, export, tamper evidence.

It reads the stored events themselves (never the read models), with the log's recorder
and mapper, and imports nothing from the write side. Use
``eventshop.bootstrap.open_auditor`` to get an :class:`~projections.audit.auditor.Auditor`
(it creates the checkpoints and receipts tables once; reading never runs DDL).

- ``auditor``: the Auditor: pages of the log with filters, histories, state at a version
  or a time, export, digest, receipts and verify.
- ``chain``: the chain head over events (Checkpoint, Digest), and reading an export back
  into stored events with their links.
- ``links``: the links written with each event (``eventstore/links.py``), and linking a
  log written before them, once.
- ``receipts``: Ed25519-signed receipts of a link, their keys and their table.
- ``issuer``: the writer side's thread that signs a receipt every N events or T seconds.
- ``verification``: verified / unanchored / tampered, from links and receipts (pure).
- ``checkpoints``: the per-store table of chain heads kept before links existed.
- ``aggregate_events``: one aggregate's stored events with their log positions.
"""
