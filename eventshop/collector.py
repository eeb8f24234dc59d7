"""The cyclic garbage collector, tuned for a long-running server process.

With Python's default thresholds a busy `eventshop serve` ran a full collection every
second or so, each walking every object the process holds (modules, the app, the
aggregate cache): about 2 s of CPU in a 20 s benchmark round (a tenth of the process's
time), in pauses of up to 160 ms that every request in flight waited out. Reference
counting frees almost everything; the collector is only for cycles. So it runs less
often, and what the process made while starting is moved out of its sight
(``gc.freeze``): with both, one benchmark round ran no full collection at all and
spent 0.2 s collecting (bench/write_path.py; 8% more receipts per second).
"""

from __future__ import annotations

import gc

# Collect the youngest generation after this many more allocations than frees (default
# 700), the middle one after 20 of those, the oldest after 100 of the middle's (and,
# as always, only once the survivors since the last full run are a quarter of it).
THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Collect less often: call once, when a server process starts."""
    gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """Collect once, then leave everything alive now out of later collections: call when
    the process has started (it holds its modules, app and caches for good)."""
    gc.collect()
    gc.freeze()
