"""The floor for HTTP command throughput: FastAPI plus one raw psycopg insert per request.

It does the least any event store on PostgreSQL must do per command, under the same
``LOCK TABLE ... IN EXCLUSIVE MODE`` that eventsourcing takes to keep positions in
commit order. eventshop's command routes are measured against it in the same run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg_pool import ConnectionPool

DSN = os.environ.get("FLOOR_DSN", "dbname=postgres host=127.0.0.1 user=postgres")
TABLE = """
CREATE TABLE IF NOT EXISTS floor_events (
    notification_id BIGSERIAL PRIMARY KEY,
    originator_id UUID NOT NULL,
    originator_version BIGINT NOT NULL,
    topic TEXT NOT NULL,
    state BYTEA NOT NULL,
    UNIQUE (originator_id, originator_version)
)
"""
pool = ConnectionPool(DSN, min_size=4, max_size=20, open=False)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    pool.open(wait=True)
    with pool.connection() as conn:
        conn.execute(TABLE)
    yield
    pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/floor/{sku}", status_code=200)
def insert(sku: str) -> dict[str, int]:
    with pool.connection() as conn, conn.transaction():
        conn.execute("LOCK TABLE floor_events IN EXCLUSIVE MODE")
        row = conn.execute(
            "INSERT INTO floor_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, 'floor', %s) RETURNING notification_id",
            (uuid.uuid4(), b'{"sku": "%s", "quantity": 1}' % sku.encode()),
        ).fetchone()
    assert row is not None
    return {"position": row[0]}
