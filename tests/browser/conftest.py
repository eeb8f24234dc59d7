"""The console in a real browser: Debian's Chromium driven by Playwright, against the real
app served by uvicorn on 127.0.0.1.

One browser (per pytest-xdist worker) and one server on SQLite (with a short history
written through the shop's commands) for the module's tests; each test opens fresh
tabs, each with a sessionStorage of its own. With
``EVENTSHOP_SCREENSHOTS=docs`` some tests save the README's screenshots there. Playwright never
downloads a browser here: it launches /usr/bin/chromium (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    expect,
    sync_playwright,
)

from api.app import create_app
from api.auth import mint
from api.passwords import hash_password
from commands.service import Shop
from eventshop import bootstrap
from eventshop.settings import Settings
from tests.audit.conftest import History, make_history
from tests.conftest import settings_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
SECRET = "test-secret-of-the-browser-tests-0123456789"
ADMIN_USER, ADMIN_PASSWORD = "root", "a password of the browser tests"
NATS_URL = "nats://127.0.0.1:4222"
# Long enough for a loaded 2-core machine; a passing test waits far less.
expect.set_options(timeout=10_000)


@dataclass
class Served:
    """The app serving on 127.0.0.1, its settings, the shop it writes with, and what was
    written."""

    url: str
    settings: Settings
    shop: Shop
    history: History

    def token(self, *roles: str, sub: str = "someone") -> str:
        return mint(SECRET, sub, list(roles))


@contextmanager
def serve(database_url: str, var_dir: Path, **more: Any) -> Iterator[Served]:
    """``eventshop serve`` in a thread: the app with its read models fed in-process; ``more``
    settings (an admin, say)."""
    # A NATS server named: the read models' view lists the JetStream publisher (none runs).
    # An erasure waits out every process's key cache: short here.
    settings = settings_for(
        database_url,
        jwt_secret=SECRET,
        var_dir=var_dir,
        nats_url=NATS_URL,
        personal_key_cache_seconds=0.05,
        **more,
    )
    shop = bootstrap.open_shop(settings)
    history = make_history(shop)
    app = create_app(settings, shop=shop)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}", settings, shop, history)
    finally:
        server.should_exit = True
        thread.join(15)
        shop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server on SQLite for the module's browser tests, with an admin who may sign in
    with a password."""
    folder = tmp_path_factory.mktemp("console")
    admin = {"admin_user": ADMIN_USER, "admin_password_hash": hash_password(ADMIN_PASSWORD)}
    with serve(f"sqlite:///{folder / 'eventshop.db'}", folder, **admin) as running:
        yield running


@pytest.fixture
def served_on_postgres(pg_reused_url: str, tmp_path: Path) -> Iterator[Served]:
    with serve(pg_reused_url, tmp_path) as running:
        yield running


# Module-scoped, not session-scoped: while Playwright's sync API is open, an event loop
# counts as running in this thread, and the other tests that run one (anyio.run, say)
# would fail on this pytest worker. All the browser tests are in one module.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)", pytrace=False
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    """A browser tab on the console, with every request it made and every error it met
    (a script error, a refused Content-Security-Policy, a failed request)."""

    page: Page
    served: Served
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, view: str = "") -> None:
        self.page.goto(f"{self.served.url}/console{f'#/{view}' if view else ''}")

    def sign_in(self, *roles: str, sub: str = "someone") -> None:
        self.open()
        self.page.get_by_label("Bearer token").fill(self.served.token(*roles, sub=sub))
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        expect(self.page.locator("#who-text")).to_contain_text(sub)

    def screenshot(self, name: str) -> None:
        """Save the page as ``$EVENTSHOP_SCREENSHOTS/<name>.png`` (the README's pictures)."""
        folder = os.environ.get("EVENTSHOP_SCREENSHOTS")
        if folder:
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"))

    def no_horizontal_scroll(self) -> None:
        overflow = self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{self.page.url} scrolls sideways by {overflow} px"


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One browser profile for the module: each tab in it still has a sessionStorage of
    its own (what the console keeps the token in), and opening a tab is cheaper than a
    profile."""
    made = browser.new_context(accept_downloads=True)
    yield made
    made.close()


@pytest.fixture
def tab_on(context: BrowserContext) -> Iterator[Callable[..., Tab]]:
    """Open a tab on a served app: ``tab_on(served, width=390)``."""
    pages = []

    def open_tab(served: Served, width: int = 1280) -> Tab:
        page = context.new_page()
        pages.append(page)
        page.set_viewport_size({"width": width, "height": 900})
        tab = Tab(page, served)

        def record(request: Request) -> None:
            tab.requests.append(request.url)

        page.on("request", record)
        page.on("pageerror", lambda error: tab.errors.append(f"script: {error}"))
        page.on(
            "console",
            lambda message: message.type == "error" and tab.errors.append(message.text),
        )
        page.on(
            "requestfailed",
            lambda request: (
                "aborted" not in (request.failure or "").lower()
                and tab.errors.append(f"failed: {request.url} {request.failure}")
            ),
        )
        return tab

    yield open_tab
    for page in pages:
        page.close()
