"""The web console at ``/console``: a static page of plain JavaScript modules, served by the
app itself (no CDN, no build step), that calls the same JSON routes as any client with
the bearer token the user signs in with. It holds no privilege of its own: what a role
may not read, the API refuses, and the console shows the refusal.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/console/assets"

# Everything the page loads comes from this origin; no inline script or style, so that
# a value shown by the console (an event's data, say) cannot run as code and reach the
# token kept in sessionStorage.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # The page is small and changes with each release; never a stale copy of it.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/console")
def console_page() -> FileResponse:
    """The console's one page; its views are chosen by the URL's fragment (#/log …)."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


@router.get("/console/")
def console_slash() -> RedirectResponse:
    return RedirectResponse("/console", status_code=308)


class _Assets(StaticFiles):
    """The console's scripts and styles, under the same policy as the page."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def install(app: FastAPI) -> None:
    """Serve the console's page and assets on ``app``."""
    app.include_router(router)
    app.mount(ASSETS_PATH, _Assets(directory=STATIC), name="console-assets")
