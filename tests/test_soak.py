"""Three cycles of the soak (``bench/soak.py``; ``make soak`` runs 20) on PostgreSQL.

Each cycle: ``eventshop serve`` (read models fed in it) under mixed load from client
threads, whose concurrent saves share transactions (group commit), is killed with
SIGKILL at a random moment and restarted while the clients retry with the same
Idempotency-Key; then every acknowledged command's events are in the log exactly once,
no request ran twice, the read models equal a rebuild from scratch, and ``eventshop
audit verify`` exits 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import soak
from bench.traffic import Traffic

CYCLES = 3


@pytest.mark.slow
def test_acknowledged_commands_survive_sigkills_under_mixed_load(
    pg_url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    cycles, ledger = soak.soak(pg_url, CYCLES, tmp_path, echo=lines.append)
    print("\n" + "\n".join(lines) + "\n" + soak.summary(cycles, CYCLES, ledger, 0))

    assert [cycle.failure for cycle in cycles] == [None] * CYCLES
    # The load really ran in each cycle, before its kill and after the restart, and the
    # kill cut requests off.
    assert all(c.acked_before < c.acked_at_kill < c.acked for c in cycles), cycles
    assert all(c.retried for c in cycles), cycles
    # Mixed: every kind of command the issue names was acknowledged.
    kinds = ledger.kinds()
    assert all(kinds[kind] for kind in Traffic.KINDS if kind != "delivery"), kinds
