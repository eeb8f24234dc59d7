"""The auditors' routes: the log, histories, time travel, export, digest, live feed,
receipts, verification and inclusion proofs.

All of them read the event store itself (not the projections), and only auditors may;
the receipts' public key is for anyone signed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from api.deps import Instant, Page, principal, require
from api.errors import problem_responses
from api.openapi import CONTENT_DISPOSITION, EventStreamResponse, NDJSONResponse, streamed
from api.text import SingleLine
from api.views import SkuPath
from domain.errors import InvalidValue, NotFound, RuleBroken
from domain.product import Product
from domain.stock import Stock
from projections.audit.auditor import Auditor
from projections.audit.issuer import ReceiptIssuer
from projections.audit.proofs import check_proof
from projections.audit.receipts import key_id, public_pem
from projections.audit.verification import Verification
from projections.engine.pagination import MAX_LIMIT

router = APIRouter(prefix="/api/audit", tags=["audit"], dependencies=[Depends(require("auditor"))])
# Routes any signed-in caller may use.
public = APIRouter(prefix="/api/audit", tags=["audit"], dependencies=[Depends(principal)])

# How often the live feed looks for new events; one cheap indexed query per client.
POLL_SECONDS = 0.5
# The largest position either store can hold (a signed 64-bit integer).
MAX_POSITION = 2**63 - 1
# A position as text: ASCII digits only (str.isdigit() also takes "²", which int() refuses).
_POSITION = re.compile(r"[0-9]+")


def get_auditor(request: Request) -> Auditor:
    """The app's one Auditor (made with the app: api/app.py)."""
    return request.app.state.auditor  # type: ignore[no-any-return]


AuditorDep = Annotated[Auditor, Depends(get_auditor)]


def get_issuer(request: Request) -> ReceiptIssuer:
    """The app's receipt issuer (api/app.py), which holds the signing key."""
    return request.app.state.receipts  # type: ignore[no-any-return]


IssuerDep = Annotated[ReceiptIssuer, Depends(get_issuer)]


class CauseView(BaseModel):
    actor: str = Field(description="the token subject that caused the event, or 'system'")
    role: str | None = Field(description="the caller's roles, comma-separated")
    correlation_id: str | None = Field(description="the X-Request-ID of the request that made it")


class AuditEvent(BaseModel):
    position: int = Field(description="the event's place in the global log")
    aggregate_id: UUID
    aggregate_type: str = Field(examples=["Cart"])
    version: int = Field(description="the aggregate's version this event made")
    type: str = Field(examples=["Cart.ItemAdded"])
    timestamp: datetime | None = Field(description="when it happened; null if undecodable")
    data: dict[str, Any] | None = Field(description="what the event says; null if undecodable")
    metadata: CauseView | None = Field(description="who caused it, for which request")


class EventPage(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: done")


class AggregateHistory(BaseModel):
    aggregate_id: UUID
    aggregate_type: str
    version: int = Field(description="the aggregate's current version")
    items: list[AuditEvent]


class AggregateState(BaseModel):
    id: UUID
    type: str
    version: int
    created_on: datetime
    modified_on: datetime
    state: dict[str, Any] = Field(description="the aggregate's attributes at that version")


class DigestView(BaseModel):
    upto: int = Field(description="the last position the chain covers")
    events: int = Field(description="how many events the chain covers")
    head: str = Field(description="SHA-256 chain head, hex; keep it to verify later")


class ReceiptView(BaseModel):
    position: int = Field(description="the last position the receipt covers")
    link: str = Field(description="the hash link of the event at that position (hex)")
    time: str = Field(description="when it was signed (ISO 8601, UTC)")
    key_id: str = Field(description="the signing key's id (see /api/audit/public-key)")
    tree_size: int | None = Field(
        description="how many events the Merkle tree up to the position has (null: a receipt"
        " made before inclusion proofs)"
    )
    tree_root: str | None = Field(
        description="the root of that tree (hex), what inclusion proofs are checked against"
    )
    signature: str = Field(description="Ed25519 signature (base64) of the fields above")


class ReceiptPage(BaseModel):
    items: list[ReceiptView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: done")


class ProvedEvent(AuditEvent):
    topic: str = Field(description="the stored topic")
    state: str = Field(description="the stored bytes (base64): what the link hashes")
    link: str | None = Field(description="the hash link stored with the event (hex)")


class InclusionProofView(BaseModel):
    position: int = Field(description="the proved event's position")
    event: ProvedEvent = Field(description="the event as stored, as in an export")
    previous_link: str = Field(
        description="the link of the event before it (hex; zeros for the first): with the"
        " event's bytes it gives the event's link, the leaf"
    )
    leaf_index: int = Field(description="the leaf's index in the tree (its rank in the log)")
    tree_size: int = Field(description="how many leaves (events) the tree has")
    audit_path: list[str] = Field(
        description="the sibling hashes from the leaf up (hex; RFC 9162 §2.1.3)"
    )
    root: str = Field(description="the tree's root over the links as stored now (hex)")
    receipt: ReceiptView = Field(description="the signed receipt the proof is checked against")
    holds: bool = Field(
        description="whether this server, with its trusted keys, finds the proof good;"
        " check it yourself offline: eventshop audit check-proof"
    )
    detail: str = Field(description="why it holds or not")


class PublicKeyView(BaseModel):
    algorithm: str = Field(examples=["Ed25519"])
    key_id: str
    public_key: str = Field(description="PEM (SubjectPublicKeyInfo)")
    trusted: list[str] = Field(description="ids of every key verify trusts here")


class ExportedEvent(AuditEvent):
    """One line of the export: the event as /events shows it, plus its exact stored bytes."""

    topic: str = Field(description="the stored event's class, as the event store names it")
    state: str = Field(description="the stored bytes, base64")
    link: str | None = Field(description="the hash link stored with it (hex); null if none")


class VerificationStatus(StrEnum):
    VERIFIED = "verified"
    UNANCHORED = "unanchored"
    TAMPERED = "tampered"
    BAD_RECEIPT = "bad receipt"


class VerifyProgress(BaseModel):
    position: int = Field(description="how far the log has been read")
    events: int


class VerificationResult(BaseModel):
    status: VerificationStatus
    events: int = Field(description="events checked")
    upto: int = Field(description="the last position checked")
    verified_upto: int = Field(description="the last position a receipt vouches for")
    anchors: int = Field(description="receipts (and digests) checked")
    head: str = Field(description="the chain head at `upto` (hex)")
    detail: str
    position: int | None = Field(default=None, description="tampered: the first bad position")
    after: int | None = None


class VerifyLine(BaseModel):
    """One line of a verification: progress as the log is read, then, last, the result."""

    progress: VerifyProgress | None = None
    result: VerificationResult | None = None


def _start(after: int, cursor: str | None) -> int:
    if cursor is None:
        return after
    if not _POSITION.fullmatch(cursor):
        raise InvalidValue("cursor", "cursor must be a next_cursor this API returned")
    return int(cursor)


@router.get("/events", response_model=EventPage, responses=problem_responses(401, 403, 422))
def list_audit_events(
    auditor: AuditorDep,
    page: Page,
    after: Annotated[int, Query(ge=0, description="list events after this position")] = 0,
    type: Annotated[
        SingleLine | None, Query(description="an event type: Cart.ItemAdded, or just ItemAdded")
    ] = None,
    aggregate_id: UUID | None = None,
    from_: Annotated[
        Instant | None, Query(alias="from", description="events at or after (ISO 8601)")
    ] = None,
    to: Annotated[Instant | None, Query(description="events before (ISO 8601)")] = None,
) -> Any:
    """The global log in order, filtered; a page may be short when filters skip much."""
    where = auditor.log_filter(type, aggregate_id, from_, to)
    found = auditor.events(_start(after, page.cursor), page.limit, where)
    return {"items": found.items, "next_cursor": found.next_cursor}


@router.get(
    "/aggregates/{aggregate_id}/events",
    response_model=AggregateHistory,
    responses=problem_responses(401, 403, 404, 422),
)
def get_aggregate_history(aggregate_id: UUID, auditor: AuditorDep) -> Any:
    """One aggregate's whole history, in order."""
    items = auditor.history(aggregate_id)
    return {
        "aggregate_id": aggregate_id,
        "aggregate_type": items[-1]["aggregate_type"],
        "version": items[-1]["version"],
        "items": items,
    }


@router.get(
    "/aggregates/{aggregate_id}/state",
    response_model=AggregateState,
    responses=problem_responses(401, 403, 404, 422),
)
def get_aggregate_state(
    aggregate_id: UUID,
    auditor: AuditorDep,
    version: Annotated[int | None, Query(ge=1, description="the state at this version")] = None,
    at: Annotated[Instant | None, Query(description="the state at this moment (ISO 8601)")] = None,
) -> Any:
    """The aggregate as it was at a version or a moment (else now), replayed from its events."""
    return auditor.state(aggregate_id, version=version, at=at)


@router.get(
    "/export",
    response_class=NDJSONResponse,
    responses={
        **streamed(
            ExportedEvent,
            "NDJSON, one ExportedEvent per line: the fields of /events plus `topic`, `state`"
            " (the stored bytes, base64) and `link`",
            CONTENT_DISPOSITION,
        ),
        **problem_responses(401, 403, 422),
    },
)
def export_audit_log(
    auditor: AuditorDep,
    after: Annotated[int, Query(ge=0, description="export events after this position")] = 0,
    until: Annotated[int | None, Query(ge=0, description="up to this position")] = None,
) -> NDJSONResponse:
    """The log as NDJSON, streamed in constant memory however long it is."""
    return NDJSONResponse(
        auditor.export(after, until),
        headers={"Content-Disposition": 'attachment; filename="eventshop-log.ndjson"'},
    )


@router.get("/digest", response_model=DigestView, responses=problem_responses(401, 403, 422))
def get_audit_digest(
    auditor: AuditorDep,
    upto: Annotated[int | None, Query(ge=0, description="default: the whole log")] = None,
) -> Any:
    """The SHA-256 hash chain head over the log up to a position.

    Keep it: `eventshop audit verify --digest HEAD --upto N` later proves that nothing
    up to N was changed, deleted, inserted or reordered.
    """
    return auditor.digest(upto)


@router.get(
    "/live",
    response_class=EventStreamResponse,
    responses={
        **streamed(
            AuditEvent,
            "Server-Sent Events, each new event as it is stored: `id` is its position,"
            " `data` an AuditEvent as JSON",
        ),
        **problem_responses(401, 403, 422),
    },
)
def stream_audit_events(
    auditor: AuditorDep,
    after: Annotated[
        int | None, Query(ge=0, description="start after this position (default: now)")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="resume after this event")
    ] = None,
) -> EventStreamResponse:
    """Server-Sent Events: every new event as it is stored; resumes from Last-Event-ID."""
    if last_event_id is not None and _POSITION.fullmatch(last_event_id.strip()):
        start = int(last_event_id)
    elif after is not None:
        start = after
    else:
        start = auditor.head()
    return EventStreamResponse(live_events(auditor, start), ping=15)


async def live_events(
    auditor: Auditor, after: int, poll_seconds: float = POLL_SECONDS
) -> AsyncGenerator[dict[str, str], None]:
    """Server-sent events for each event after ``after``, following the log forever.

    Polls, so that it works alike on SQLite (which has no subscriptions) and PostgreSQL;
    the read runs in a worker thread because the store is synchronous.
    """
    while True:
        page = await anyio.to_thread.run_sync(auditor.events, after, MAX_LIMIT)
        for item in page.items:
            after = item["position"]
            yield {"id": str(after), "data": json.dumps(to_jsonable_python(item))}
        if page.next_cursor is None:
            await anyio.sleep(poll_seconds)


# --- receipts and verification ------------------------------------------------------


@public.get("/public-key", response_model=PublicKeyView, responses=problem_responses(401))
def get_audit_public_key(request: Request, issuer: IssuerDep) -> Any:
    """The Ed25519 public key receipts are signed with: check receipts with it offline."""
    signer = issuer.signer
    return {
        "algorithm": "Ed25519",
        "key_id": key_id(signer.public),
        "public_key": public_pem(signer.public),
        "trusted": sorted(request.app.state.trusted_keys),
    }


@router.get("/receipts", response_model=ReceiptPage, responses=problem_responses(401, 403, 422))
def list_audit_receipts(
    auditor: AuditorDep,
    page: Page,
    after: Annotated[int, Query(ge=0, description="receipts after this position")] = 0,
) -> Any:
    """The signed receipts, in log order. Keep copies away from the database."""
    found = auditor.receipts.after(_start(after, page.cursor), page.limit + 1)
    more = len(found) > page.limit
    found = found[: page.limit]
    return {
        "items": [r.as_json() for r in found],
        "next_cursor": str(found[-1].position) if more else None,
    }


@router.post(
    "/receipts",
    response_model=ReceiptView,
    status_code=201,
    responses=problem_responses(401, 403, 409, 422),
)
def issue_audit_receipt(issuer: IssuerDep) -> Any:
    """Sign a receipt of the log's last event now (the one kept there, if already signed)."""
    receipt = issuer.issue()
    if receipt is None:
        raise RuleBroken("the log is empty: there is nothing to sign yet")
    return receipt.as_json()


@router.get(
    "/verify",
    response_class=NDJSONResponse,
    responses={
        **streamed(
            VerifyLine,
            'NDJSON, one VerifyLine per line: `{"progress": {position, events}}` as the log'
            ' is read, then `{"result": {status, position, verified_upto, detail, ...}}`;'
            " status is `verified`, `unanchored`, `tampered` or `bad receipt`",
        ),
        **problem_responses(401, 403, 422),
    },
)
def verify_audit_log(
    request: Request,
    auditor: AuditorDep,
    from_: Annotated[
        int, Query(alias="from", ge=0, description="start after this position's stored link")
    ] = 0,
    upto: Annotated[int | None, Query(ge=0, description="verify up to this position")] = None,
) -> NDJSONResponse:
    """Recompute every event's link and check it against the stored links and receipts.

    Reads only. `verified` covers the log up to the last receipt; `unanchored` says the
    events after it match their links but nothing outside the database vouches for them.
    """
    steps = auditor.verify_steps(request.app.state.trusted_keys, upto=upto, after=from_)

    def lines() -> Any:
        for step in steps:
            kind = "result" if isinstance(step, Verification) else "progress"
            yield json.dumps({kind: to_jsonable_python(step)}) + "\n"

    return NDJSONResponse(lines())


class SkuAggregates(BaseModel):
    sku: str
    product_id: UUID = Field(description="the id of the SKU's Product aggregate")
    stock_id: UUID = Field(description="the id of the SKU's Stock aggregate")


@router.get(
    "/skus/{sku}", response_model=SkuAggregates, responses=problem_responses(401, 403, 404, 422)
)
def get_sku_aggregates(sku: SkuPath, auditor: AuditorDep) -> SkuAggregates:
    """The ids of a SKU's Product and Stock aggregates, for their histories and states."""
    found = SkuAggregates(sku=sku, product_id=Product.create_id(sku), stock_id=Stock.create_id(sku))
    if not auditor.exists(found.product_id):
        raise NotFound(f"Product {sku} does not exist")
    return found


@router.get(
    "/events/{position}/proof",
    response_model=InclusionProofView,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def get_inclusion_proof(
    request: Request,
    auditor: AuditorDep,
    position: Annotated[int, Path(ge=1, le=MAX_POSITION, description="the event's position")],
    receipt: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_POSITION,
            description="the position of the receipt to check against (default: the newest)",
        ),
    ] = None,
) -> Any:
    """An inclusion proof: the event, the link before it and the audit path from its link
    up to the Merkle root a signed receipt covers, O(log n) hashes.

    Check it offline with the receipts' public key: `eventshop audit check-proof`.
    """
    found = auditor.proof(position, receipt)
    why = check_proof(found, request.app.state.trusted_keys)
    detail = why or (
        f"the event at position {position} is leaf {found.leaf_index} of the"
        f" {found.tree_size}-leaf tree the receipt at position {found.receipt.position} signed"
    )
    return {**found.as_json(), "holds": why is None, "detail": detail}
