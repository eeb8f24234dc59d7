"""What /openapi.json says beyond what FastAPI derives from the routes, so that a client
generator (openapi-python-client, say) makes a good client of it: one operation id per
route from its function's name, the response headers the app sends, and the streamed
answers (NDJSON, Server-Sent Events) with the schema of each item they carry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from sse_starlette import EventSourceResponse

from api.errors import REQUEST_ID_HEADER
from api.freshness import POSITION_HEADER
from api.views import View


def operation_id(route: APIRoute) -> str:
    """The operation id of a route: its function's name in lower camel case
    (``add_product`` -> ``addProduct``), so a route's name says what it does."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


ETAG = {
    "ETag": _header(
        'the aggregate\'s version as a strong entity tag ("3"); send it as If-Match to act'
        " only on that version"
    )
}
LOCATION = {"Location": _header("the path of what was made", {"type": "string"})}
PROJECTION_POSITION = {
    POSITION_HEADER: _header(
        "how far the read model that answered had got in the log: the answer holds every"
        " event up to this position",
        {"type": "integer", "minimum": 0},
    )
}
RETRY_AFTER = {"Retry-After": _header("seconds to wait before sending again", {"type": "integer"})}
WWW_AUTHENTICATE = {"WWW-Authenticate": _header("`Bearer`: how to authenticate")}
ALLOW = {"Allow": _header("the methods the path takes")}
ACCEPT = {"Accept": _header("the media type a body must be sent as: application/json")}
CONTENT_DISPOSITION = {
    "Content-Disposition": _header("`attachment` with a file name, for browsers that save it")
}
_REQUEST_ID_HEADER = {
    REQUEST_ID_HEADER: _header("this request's id, also in the log lines it caused and its events")
}
# Headers a problem of each status comes with (api/errors.py, api/deps.py, api/freshness.py).
PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: WWW_AUTHENTICATE,
    405: ALLOW,
    415: ACCEPT,
    429: RETRY_AFTER,
    503: RETRY_AFTER,
}


def answer(status: int, *headers: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` entry for its answer of ``status`` sent with ``headers``."""
    return {status: {"headers": {k: v for h in headers for k, v in h.items()}}}


NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"


class NDJSONResponse(StreamingResponse):
    """A streamed answer of JSON lines (its type named here so that the document says it)."""

    media_type = NDJSON


class EventStreamResponse(EventSourceResponse):
    """Server-Sent Events (its type named here so that the document says it)."""

    media_type = EVENT_STREAM


def streamed(
    item: type[Any], description: str, *headers: dict[str, Any]
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route (its ``response_class`` NDJSONResponse or
    EventStreamResponse) answering 200 with a stream of ``item``: NDJSON, one item per
    line, or Server-Sent Events whose ``data`` is an item as JSON.

    :func:`document` turns FastAPI's entry into the stream's: the body is a string
    (binary for NDJSON, which a generated client hands over as a file to read line by
    line), and ``itemSchema`` (the name OpenAPI 3.2 gives it, as FastAPI's own streams
    do) the schema of each item.
    """
    declared = {k: v for h in headers for k, v in h.items()}
    return {200: {"model": item, "description": description, "headers": declared}}


def _stream(media_type: str, content: dict[str, Any], description: str) -> None:
    item = content.get("schema", {})
    if media_type not in (NDJSON, EVENT_STREAM) or "$ref" not in item:
        return
    ref = {"$ref": item["$ref"]}
    body = {"type": "string", "description": description}
    if media_type == NDJSON:
        content["schema"] = {**body, "format": "binary"}
        content["itemSchema"] = ref
        return
    content["schema"] = body
    # An event of the stream: its ``id`` (a log position) and its ``data``, the item as JSON.
    content["itemSchema"] = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "description": "the event's position in the log"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": ref,
            },
        },
    }


def document(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """/openapi.json with what the routes cannot say themselves: the headers every answer
    carries (X-Request-ID, api/edge.py), those of each problem status, ETag on every
    answer that is an aggregate's view (api/views.py ``shown`` and ``committed`` set it),
    X-Projection-Position on every answer of a query that reads a read model (those that
    take ``min_position``: api/freshness.py sets both), and the streams' item schemas."""

    def openapi() -> dict[str, Any]:
        schema = build()
        views = _views()
        for path in schema["paths"].values():
            for operation in path.values():
                _declare_headers(operation, views)
                ok = operation.get("responses", {}).get("200", {})
                for media_type, content in ok.get("content", {}).items():
                    _stream(media_type, content, ok.get("description", ""))
        return schema

    return openapi


def _views() -> set[str]:
    """The component names of every view of an aggregate."""
    found, todo = set(), [View]
    while todo:
        cls = todo.pop()
        found.add(f"#/components/schemas/{cls.__name__}")
        todo.extend(cls.__subclasses__())
    return found


def _declare_headers(operation: dict[str, Any], views: set[str]) -> None:
    reads_a_model = any(p["name"] == "min_position" for p in operation.get("parameters", []))
    for status, response in operation.get("responses", {}).items():
        schemas = [c.get("schema", {}).get("$ref") for c in response.get("content", {}).values()]
        is_view = any(ref in views for ref in schemas)
        headers = response.setdefault("headers", {})
        headers.update(_REQUEST_ID_HEADER)
        code = int(status) if status.isdigit() else 0
        headers.update(PROBLEM_HEADERS.get(code, {}))
        if reads_a_model and (200 <= code < 300 or code == 503):
            headers.update(PROJECTION_POSITION)
        if is_view and 200 <= code < 300:
            headers.update(ETAG)
