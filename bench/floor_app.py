"""The floor of the write path: FastAPI plus one raw psycopg insert per request.

It does the least any event store on PostgreSQL must do per command, under the same
``LOCK TABLE ... IN EXCLUSIVE MODE`` that eventsourcing takes to keep positions in
commit order, into a table of the same shape as the shop's ``stored_events``: one
transaction per request, ``events`` rows in it (default 1). No aggregate is loaded, no
rule checked, no token read. bench/write_path.py serves it in its own uvicorn process
(``python -m uvicorn bench.floor_app:app``), as a user would deploy it, next to
``eventshop serve`` in another, and drives both with the same client (bench/load.py).

FLOOR_DSN names the database; FLOOR_NONCE, if set, is answered by ``GET /floor`` so
that the benchmark knows it reached this process and not another one on the port.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query
from psycopg import Connection
from psycopg_pool import ConnectionPool

DSN = os.environ.get("FLOOR_DSN", "dbname=postgres host=127.0.0.1 user=postgres")
NONCE = os.environ.get("FLOOR_NONCE", "")
TABLE = "floor_events"
# The shape of eventsourcing's stored_events on PostgreSQL (eventsourcing/postgres.py).
DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " originator_id uuid NOT NULL,"
    " originator_version bigint NOT NULL,"
    " topic text,"
    " state bytea,"
    " notification_id bigserial,"
    " PRIMARY KEY (originator_id, originator_version));"
    f" CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_notification_id_idx"
    f" ON {TABLE} (notification_id ASC)"
)
INSERT = (
    f"INSERT INTO {TABLE} (originator_id, originator_version, topic, state)"
    " VALUES (%s, %s, %s, %s) RETURNING notification_id"
)
TOPIC = "bench.floor_app:Floor.Event"


def create_table(conn: Connection[Any]) -> None:
    """Make the floor's table (under an advisory lock: several processes may start)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(4242)")
        conn.execute(DDL)


pool = ConnectionPool(DSN, min_size=4, max_size=20, open=False)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    pool.open(wait=True)
    with pool.connection() as conn:
        create_table(conn)
    yield
    pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/floor")
def whoami() -> dict[str, str]:
    return {"nonce": NONCE}


@app.post("/floor/{key}", status_code=200)
def insert(key: str, events: int = Query(1, ge=1, le=10)) -> dict[str, int]:
    state = b'{"key": "%s", "quantity": 1}' % key.encode()
    with pool.connection() as conn, conn.transaction():
        conn.execute("LOCK TABLE floor_events IN EXCLUSIVE MODE")
        position = 0
        for _ in range(events):
            row = conn.execute(INSERT, (uuid.uuid4(), 1, TOPIC, state)).fetchone()
            assert row is not None
            position = row[0]
    return {"position": position}
