"""What eventshop tells the world: integration events, and the publishers that deliver
them (NATS JetStream here; webhooks beside it), each following the log like a read model.

``events.py`` is the public contract: which domain events become which CloudEvents, and
with what data (``schemas/``, one JSON Schema per type). The internal events may change
shape freely; these change only by a new version of a type's schema.
"""
