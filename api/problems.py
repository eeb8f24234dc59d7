"""The problem types of the API's errors, each a page the app serves at ``/problems/<kind>``:
the ``type`` of every problem+json answer resolves to one, saying what went wrong and what
to do about it."""

from __future__ import annotations

import html
from dataclasses import dataclass

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse

PATH = "/problems"


@dataclass(frozen=True)
class ProblemType:
    title: str
    status: int
    means: str
    to_do: str


TYPES: dict[str, ProblemType] = {
    # Refused by the domain (domain/errors.py: the class name, in kebab case).
    "domain-error": ProblemType(
        "Command refused", 409, "The command breaks a rule of the shop.", "Read `detail`."
    ),
    "invalid-value": ProblemType(
        "Invalid value",
        422,
        "A value breaks a rule of the shop; `errors` names the field.",
        "Correct the field and send the request again.",
    ),
    "not-found": ProblemType(
        "Not found",
        404,
        "Nothing is at this path: an unknown product, cart or order (another customer's"
        " answers the same), or no route at all.",
        "Check the id or SKU, and the path against /docs.",
    ),
    "already-exists": ProblemType(
        "Already exists",
        409,
        "Something with this key (a SKU, say) exists already.",
        "Change the existing one (PATCH) or choose another key.",
    ),
    "rule-broken": ProblemType(
        "Rule broken",
        409,
        "The command is not allowed in the aggregate's present state (a closed cart, an"
        " unpaid order shipped …); nothing was recorded.",
        "Read the aggregate's state (GET) and send a command that fits it.",
    ),
    "insufficient-stock": ProblemType(
        "Insufficient stock",
        409,
        "Not enough units are available for some lines (`short` names the SKUs); nothing"
        " was reserved.",
        "Lower the quantities of those lines, or wait for stock to be received.",
    ),
    "stale-version": ProblemType(
        "Stale version",
        412,
        "The If-Match version is not the aggregate's current one: someone changed it since.",
        "Read it again (its ETag is the version) and decide again.",
    ),
    "concurrency-conflict": ProblemType(
        "Concurrency conflict",
        409,
        "Another command changed the same aggregate at once.",
        "Send the command again.",
    ),
    "busy": ProblemType(
        "Busy",
        503,
        "The aggregate is too busy to take the command in time.",
        "Send it again after `Retry-After` seconds, with the same Idempotency-Key.",
    ),
    "idempotency-key-reused": ProblemType(
        "Idempotency key reused",
        422,
        "The Idempotency-Key was first sent with another request (route, body or If-Match).",
        "Use a new key for a new request; repeat a request only exactly as it was.",
    ),
    "already-erased": ProblemType(
        "Already erased",
        409,
        "The customer's personal data was erased, and none was stored since.",
        "Nothing to do: POST /api/customers/{id}/erasure answers with that erasure again.",
    ),
    # Operations on the read models (admin).
    "already-rebuilding": ProblemType(
        "Rebuild already running",
        409,
        "The read model is being rebuilt already.",
        "Watch its progress in GET /api/projections; start another once it has ended.",
    ),
    "not-parked": ProblemType(
        "Event not parked",
        404,
        "No such event is parked for that read model (never, or retried or skipped already).",
        "List the parked events: GET /api/projections/{name}/parked.",
    ),
    "still-failing": ProblemType(
        "Event still fails",
        409,
        "The retried event failed again; nothing was written and it stays parked.",
        "Fix the handler (`detail` has the error) and retry, or skip the event.",
    ),
    # Webhook subscriptions (admin).
    "subscription-not-found": ProblemType(
        "Webhook subscription not found",
        404,
        "No webhook subscription has this id.",
        "List them: GET /api/webhooks.",
    ),
    "delivery-not-found": ProblemType(
        "Webhook delivery not found",
        404,
        "The subscription has no delivery of this event (its id is <aggregate id>/<version>).",
        "List its deliveries: GET /api/webhooks/{id}/deliveries.",
    ),
    # The configured admin's login (POST /api/auth/login).
    "login-failed": ProblemType(
        "Login failed",
        401,
        "The user name or the password is wrong.",
        "Check both and try again; after a few failures a minute the server waits (429).",
    ),
    "too-many-attempts": ProblemType(
        "Too many attempts",
        429,
        "Too many logins failed from this address in the last minute.",
        "Wait `Retry-After` seconds before trying again.",
    ),
    "login-not-configured": ProblemType(
        "Login not configured",
        404,
        "No admin may sign in with a password on this server.",
        "Sign in with a token (`eventshop token --role admin`), or set EVENTSHOP_ADMIN_USER"
        " and EVENTSHOP_ADMIN_PASSWORD_HASH (`eventshop admin-password-hash`).",
    ),
    # Inclusion proofs (auditor).
    "event-not-found": ProblemType(
        "Event not found",
        404,
        "No event is at this position of the log.",
        "List the log (GET /api/audit/events) for the positions there are.",
    ),
    "receipt-not-found": ProblemType(
        "Receipt not found",
        404,
        "No receipt was issued at that position (or none at all yet).",
        "List the receipts (GET /api/audit/receipts), or sign one now (POST).",
    ),
    "not-covered": ProblemType(
        "Event not covered by the receipt",
        422,
        "The event comes after the receipt's position: the receipt says nothing about it.",
        "Ask against a later receipt (POST /api/audit/receipts signs one now).",
    ),
    "unprovable": ProblemType(
        "No proof can be made",
        409,
        "The receipt was signed before inclusion proofs (it signs no Merkle tree), or the"
        " event has no link (it was inserted behind the application's back).",
        "Use a later receipt; for an event without a link, run eventshop audit verify.",
    ),
    # Refused at the edge, before any command ran.
    "malformed-json": ProblemType(
        "Malformed JSON",
        400,
        "The body is not valid JSON, or gives one key twice.",
        "Send one JSON document, each key once.",
    ),
    "bad-request": ProblemType(
        "Bad request", 400, "The request is malformed (a bad If-Match, say).", "Read `detail`."
    ),
    "invalid-input": ProblemType(
        "Invalid input",
        422,
        "Some fields fail validation; `errors` names each.",
        "Correct those fields; /docs gives every field's type and limits.",
    ),
    "unauthorized": ProblemType(
        "Unauthorized",
        401,
        "No bearer token, or one that is expired, forged or malformed.",
        "Send `Authorization: Bearer <token>`; `eventshop token --role R` prints one.",
    ),
    "forbidden": ProblemType(
        "Forbidden",
        403,
        "The token's roles may not do this.",
        "Use a token with one of the roles `detail` names.",
    ),
    "method-not-allowed": ProblemType(
        "Method not allowed",
        405,
        "The path does not take this method.",
        "Use one of the methods the `Allow` header lists.",
    ),
    "body-too-large": ProblemType(
        "Content too large",
        413,
        "The body is larger than the server accepts.",
        "Send less (EVENTSHOP_MAX_BODY_BYTES sets the limit).",
    ),
    "unsupported-media-type": ProblemType(
        "Unsupported media type",
        415,
        "The body was not sent as JSON.",
        "Send it with `Content-Type: application/json`.",
    ),
    "headers-too-large": ProblemType(
        "Headers too large",
        431,
        "The request's headers are larger than 16 KiB in all.",
        "Send fewer or shorter headers.",
    ),
    "internal-error": ProblemType(
        "Internal server error",
        500,
        "Something failed that should not have.",
        "Report it, quoting the request id `detail` gives.",
    ),
    "database-unavailable": ProblemType(
        "Service unavailable",
        503,
        "The database did not answer in time; nothing the request did was acknowledged.",
        "Send the request again after `Retry-After` seconds (with the same Idempotency-Key).",
    ),
    "unavailable": ProblemType(
        "Service unavailable",
        503,
        "The server cannot answer now (a read model behind, say).",
        "Send the request again after `Retry-After` seconds.",
    ),
}

# The kind of a problem raised as a bare HTTP status (routing, auth, the edge).
_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "too-many-attempts",
    431: "headers-too-large",
    500: "internal-error",
    503: "unavailable",
}


def type_uri(request: Request, kind: str | None, status: int) -> str:
    """The ``type`` of a problem: the page of its kind on this server (about:blank for a
    status that has none)."""
    kind = kind or _BY_STATUS.get(status)
    if kind is None or kind not in TYPES:
        return "about:blank"
    return f"{str(request.base_url).rstrip('/')}{PATH}/{kind}"


router = APIRouter(include_in_schema=False)


@router.get(PATH + "/{kind}", response_class=HTMLResponse)
def problem_page(kind: str = Path(pattern=r"^[a-z-]{1,40}$")) -> HTMLResponse:
    """What a problem type means and what to do about it."""
    found = TYPES.get(kind)
    if found is None:
        raise HTTPException(404, f"there is no problem type {kind!r}")
    title = html.escape(found.title)
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{title} · eventshop</title>"
        f"<h1>{title} <small>(HTTP {found.status})</small></h1>"
        f"<p>{html.escape(found.means)}</p>"
        f"<h2>What to do</h2><p>{html.escape(found.to_do)}</p>"
        f"<p>The answer is RFC 9457 problem details: <code>detail</code> says what happened"
        f" in this case. The whole API: <a href='/docs'>/docs</a>.</p></html>"
    )
    return HTMLResponse(body)
