"""The console as its users meet it, in Chromium: an auditor steps through an order's
history and downloads the log, an admin rebuilds a read model, a customer is refused the
audit views, and every page works offline and at a phone's width."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from commands.service import Shop
from domain.personal import ERASED
from domain.values import Address
from eventshop import bootstrap
from eventstore.causes import caused_by
from tests.browser.conftest import ADMIN_PASSWORD, ADMIN_USER, Served, Tab

OpenTab = Callable[..., Tab]
EVERY_ROLE = ("auditor", "staff", "admin")
SERVED = {"sqlite": "served", "postgres": "served_on_postgres"}
CAROL_EMAIL = "carol.private@example.net"
CAROL_ADDRESS = Address(
    name="Carol Private", line1="3 Still Street", city="Kiel", postal_code="24103", country="DE"
)
# Each view, and what it shows once its answers have come.
VIEWS = {
    "Log": "tbody tr",
    "Aggregate": "form[aria-label='Find an aggregate']",
    "Audit": "#export-title",
    "Read models": "tr[data-name='orders']",
    "Shop": "svg.chart",
}


def tab_hosts(tab: Tab) -> set[str]:
    """The hosts the tab sent requests to: data: URLs (Swagger UI's icons) go nowhere, a
    blob: URL names the page's own origin."""
    return {
        urlsplit(url.removeprefix("blob:")).netloc
        for url in tab.requests
        if not url.startswith("data:")
    }


def test_an_auditor_steps_back_through_an_order_downloads_and_verifies_the_log(
    tab_on: OpenTab, served: Served
) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.sign_in("auditor", sub="audit-1")
    expect(page.get_by_role("heading", name="Log", exact=True)).to_be_focused()

    page.get_by_label("Event type").fill("Order.Shipped")
    page.get_by_role("button", name="Show").click()
    shipped = page.locator("tbody tr")
    expect(shipped).to_have_count(1)
    shipped.get_by_role("link").click()

    expect(page.get_by_role("heading", name="State at version 3")).to_be_visible()
    # By keyboard; the redrawn panel gives the focus back to the button.
    page.get_by_role("button", name="Previous version").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="State at version 2")).to_be_visible()
    expect(page.get_by_role("button", name="Previous version")).to_be_focused()
    status = page.locator('tr[data-attribute="status"]')
    expect(status).to_have_class("changed")
    expect(status.locator("td").nth(1)).to_have_text("placed")
    expect(status.locator("td").nth(2)).to_have_text("paid")
    expect(page.locator('tr[data-attribute="total"]')).not_to_have_class("changed")
    tab.screenshot("console-aggregate")
    assert page.url.endswith(f"#/aggregate/{served.history.order_id}?version=2")
    # Who did it, when, and for which request.
    paid = page.locator(".timeline li").nth(1)
    expect(paid).to_have_attribute("aria-current", "true")
    expect(paid).to_contain_text("v2 Order.Paid")
    expect(paid).to_contain_text("by alice (customer)")
    expect(paid).to_contain_text("request req-cart")

    page.get_by_role("link", name="Audit").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the export").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert [json.loads(line)["position"] for line in lines] == list(
        range(1, served.shop.head() + 1)
    )
    assert download.value.suggested_filename == "eventshop-log.ndjson"

    page.get_by_role("button", name="Sign a receipt now").click()
    newest = page.locator('td[data-label="Position"]', has_text=re.compile(r"^\d+$")).first
    expect(newest).to_have_text(str(served.shop.head()))
    page.get_by_role("button", name="Verify the log").click()
    expect(page.locator("#verify-status")).to_have_attribute("data-status", "verified")


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_an_auditor_proves_a_middle_event_is_in_the_signed_log(
    tab_on: OpenTab, request: pytest.FixtureRequest, store: str
) -> None:
    served: Served = request.getfixturevalue(SERVED[store])
    auditor = {"Authorization": f"Bearer {served.token('auditor')}"}
    receipt = httpx.post(f"{served.url}/api/audit/receipts", headers=auditor).json()
    middle = receipt["position"] // 2
    proof = httpx.get(
        f"{served.url}/api/audit/events/{middle}/proof",
        params={"receipt": receipt["position"]},
        headers=auditor,
    ).json()
    tab = tab_on(served)
    page = tab.page
    tab.sign_in("auditor", sub="audit-2")
    page.get_by_role("link", name="Audit").click()
    page.get_by_role("button", name=f"Prove against the receipt at {receipt['position']}").click()
    expect(page.get_by_label("Receipt position")).to_have_value(str(receipt["position"]))
    page.keyboard.type(str(middle))  # the event's field has the keyboard
    page.keyboard.press("Enter")

    verdict = page.locator("#proof-verdict")
    expect(verdict).to_have_attribute("data-holds", "true")
    expect(verdict).to_contain_text(f"Holds: the event at position {middle} is leaf")
    expect(page.locator("#proof-leaf")).to_have_text(str(proof["leaf_index"]))
    expect(page.locator("#proof-size")).to_have_text(str(receipt["tree_size"]))
    expect(page.locator("#proof-root")).to_have_text(receipt["tree_root"])
    expect(page.locator("#proof-path li")).to_have_count(len(proof["audit_path"]))
    expect(page.locator("#proof-receipt")).to_contain_text(receipt["signature"])
    page.locator("#proof-title").evaluate("title => title.scrollIntoView()")
    if store == "sqlite":
        tab.screenshot("console-proof")

    # A proof that does not hold is said as plainly (the answer changed on its way here).
    broken = {**proof, "holds": False, "detail": "the audit path does not lead to the root"}
    page.route("**/proof?*", lambda route: route.fulfill(json=broken))
    page.get_by_role("button", name="Get the proof").click()
    expect(verdict).to_have_attribute("data-holds", "false")
    expect(verdict).to_have_class(re.compile(r"\bbad\b"))
    expect(verdict).to_contain_text("Does not hold: the audit path does not lead to the root")
    assert tab.errors == []


def test_a_product_and_its_stock_are_found_by_sku(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.sign_in("auditor")
    page.get_by_role("link", name="Aggregate").click()
    page.get_by_label("Find by").select_option("sku")
    page.get_by_label("Id, SKU or customer").fill("mug-1")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name="Stock MUG-1").click()
    expect(page.locator(".timeline li").first).to_contain_text("v1 Stock.Created")
    expect(page).to_have_url(re.compile(rf"#/aggregate/{served.history.stock_id}\?version=4$"))


def test_the_live_tail_shows_each_new_event(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.sign_in("auditor")
    page.get_by_label("Event type").fill("Stock.Received")
    page.get_by_role("button", name="Show").click()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2)
    tail = page.get_by_role("button", name="Live tail")
    tail.click()
    expect(page.get_by_role("button", name="Stop live tail")).to_have_attribute(
        "aria-pressed", "true"
    )
    served.shop.receive_stock("TEA-1", 7, "live")
    expect(rows).to_have_count(3)
    expect(rows.last).to_contain_text("Stock.Received")
    page.get_by_role("button", name="Stop live tail").click()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_an_admin_rebuilds_a_read_model_and_sees_it_end(
    tab_on: OpenTab, request: pytest.FixtureRequest, store: str
) -> None:
    served: Served = request.getfixturevalue(SERVED[store])
    tab = tab_on(served)
    page = tab.page
    tab.sign_in("admin", sub="ops-1")
    expect(page.get_by_role("heading", name="Read models")).to_be_visible()
    orders = page.locator('tr[data-name="orders"]')
    expect(orders).to_have_attribute("data-state", "live")
    # Under the read models, the outbound channels: a publisher is configured, none runs.
    jetstream = page.locator('tr[data-name="jetstream"]')
    expect(jetstream).to_have_attribute("data-state", "not_running")
    expect(jetstream).to_contain_text("JetStream")
    started = datetime.now(UTC)

    page.get_by_role("button", name="Rebuild orders").click()

    expect(page.locator("#announce")).to_have_text("Rebuild of orders finished")
    expect(orders.locator(".last-rebuild")).to_contain_text("new copy equal to the live one")
    expect(orders).to_have_attribute("data-state", "live")
    if store == "sqlite":
        tab.screenshot("console-read-models")
    admin = {"Authorization": f"Bearer {served.token('admin')}"}
    status = httpx.get(f"{served.url}/api/projections", headers=admin).json()
    last = next(m for m in status["items"] if m["name"] == "orders")["last_rebuild"]
    assert datetime.fromisoformat(last["finished_at"]) >= started
    assert last["comparison"]["equal"] is True


def test_a_running_rebuild_is_counted_in_events(tab_on: OpenTab, served: Served) -> None:
    admin = {"Authorization": f"Bearer {served.token('admin')}"}
    items = httpx.get(f"{served.url}/api/projections", headers=admin).json()["items"]
    # As on PostgreSQL, whose positions have gaps: fewer events than positions.
    running = {
        "name": "orders",
        "worker": "host:1:a",
        "started_at": "2026-01-01T00:00:00+00:00",
        "phase": "copying",
        "position": 36561,
        "target": 40000,
        "head": 40000,
        "events": 34219,
        "total": 37400,
        "events_per_second": 1000.0,
        "eta_seconds": 3.2,
    }
    rebuilding = [
        {**m, "state": "rebuilding", "rebuild": running} if m["name"] == "orders" else m
        for m in items
    ]
    tab = tab_on(served)
    page = tab.page
    page.route("**/api/projections", lambda route: route.fulfill(json={"items": rebuilding}))
    tab.sign_in("admin")
    orders = page.locator('tr[data-name="orders"]')
    expect(orders).to_contain_text("34219/37400 events (copying, about 4 s left)")
    bar = orders.get_by_role("progressbar", name="Rebuild of orders")
    expect(bar).to_have_attribute("max", "37400")
    expect(bar).to_have_attribute("value", "34219")
    expect(orders.get_by_role("button", name="Rebuild orders")).to_be_disabled()
    assert tab.errors == []


def buy(shop: Shop, customer: str) -> str:
    """An order of one tea, placed by ``customer`` with its e-mail and address."""
    with caused_by(customer, "customer"):
        cart = shop.open_cart(customer).aggregate.id
        shop.add_to_cart(cart, "TEA-1", 1, owner=customer)
        return str(shop.check_out(cart, CAROL_ADDRESS, CAROL_EMAIL, owner=customer).aggregate.id)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_an_admin_exports_then_erases_a_customer(
    tab_on: OpenTab, request: pytest.FixtureRequest, store: str
) -> None:
    served: Served = request.getfixturevalue(SERVED[store])
    # One order stored before encryption (here: with it off), one sealed with carol's key.
    unsealed = served.settings.model_copy(update={"personal_data_encryption": False})
    plain_shop = bootstrap.open_shop(unsealed, POSTGRES_POOL_SIZE="1")
    try:
        old = buy(plain_shop, "carol")
    finally:
        plain_shop.close()
    new = buy(served.shop, "carol")
    admin = {"Authorization": f"Bearer {served.token('admin')}"}
    caught_up = {"min_position": served.shop.head()}
    url = f"{served.url}/api/customers/carol/data"
    assert httpx.get(url, params=caught_up, headers=admin).status_code == 200

    tab = tab_on(served)
    page = tab.page
    tab.sign_in("admin", sub="ops-2")  # not an auditor: the section is an admin's
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#auditors-only")).to_contain_text("the API refused them")
    page.get_by_label("Customer id").fill("carol")
    page.get_by_role("button", name="Show their data").click()
    section = page.locator("#customer-data")
    expect(section.locator("tr[data-order]")).to_have_count(2)
    expect(section.locator(f'tr[data-order="{new}"]')).to_contain_text(CAROL_EMAIL)
    expect(section.locator(f'tr[data-order="{new}"]')).to_contain_text(CAROL_ADDRESS.line1)
    expect(page.locator("#customer-status")).to_have_attribute("data-erased", "false")

    page.get_by_role("button", name="Erase carol's personal data…").click()
    erase = page.get_by_role("button", name="Erase for good")
    erase.click()  # not confirmed yet: nothing is sent
    expect(section.get_by_role("alert")).to_have_text("Type carol to confirm.")
    page.get_by_label("Type carol to confirm").fill("carol")
    erase.click()

    answer = page.locator("#erasure-answer")
    expect(answer).to_contain_text("carol erased: the data key is destroyed; erasure 1")
    expect(answer.locator("[data-still-plain]")).to_have_attribute("data-still-plain", "1")
    expect(answer.get_by_role("link")).to_have_text(f"{old} v1")
    # The export again, once the read models have seen the erasure: both orders' copies
    # are erased (the plain event itself keeps its text, as listed).
    expect(page.locator("#customer-status")).to_have_attribute("data-erased", "true")
    expect(section.locator("tr[data-order] .erased")).to_have_count(4)
    expect(section).not_to_contain_text(CAROL_EMAIL)
    if store == "sqlite":
        tab.screenshot("console-erasure")
    data = httpx.get(url, headers=admin).json()
    assert data["erased"] is True
    assert {o["email"] for o in data["orders"]} == {ERASED}
    # The one failure: the auditor's part of the view, refused to an admin alone.
    assert [error for error in tab.errors if "403 (Forbidden)" not in error] == []


def test_a_customer_cannot_open_the_audit_views(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.sign_in("customer", sub="alice")
    for view in VIEWS:
        expect(page.get_by_role("link", name=view, exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", name="Nothing to show")).to_be_visible()

    for view in ("audit", "log", "aggregate"):
        tab.open(view)
        expect(page.locator("#not-for-you")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text(
            "The API refused this for your roles: this needs one of the roles: auditor"
        )
    # What the console asked for, the API refuses to this token itself.
    alice = {"Authorization": f"Bearer {served.token('customer', sub='alice')}"}
    refused = ("events", "export", "digest", "events/1/proof")
    for route in (f"/api/audit/{path}" for path in refused):
        assert httpx.get(f"{served.url}{route}", headers=alice).status_code == 403
    # Nor is a customer offered the admin's section: another's data, an erasure (its own).
    expect(page.locator("#customer-data")).to_have_count(0)
    assert httpx.get(f"{served.url}/api/customers/bob/data", headers=alice).status_code == 403
    erasure = httpx.post(f"{served.url}/api/customers/alice/erasure", headers=alice)
    assert erasure.status_code == 403
    assert all(urlsplit(url).path.startswith(("/console", "/api/")) for url in tab.requests)


def test_every_view_works_offline_without_errors(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.sign_in(*EVERY_ROLE)
    for view, shown in VIEWS.items():
        page.get_by_role("link", name=view, exact=True).click()
        expect(page.get_by_role("heading", name=view, exact=True)).to_be_focused()
        expect(page.locator(shown).first).to_be_visible()
    expect(page.locator("svg.chart rect")).to_have_count(1)  # one day of sales
    page.goto(f"{served.url}/console#/aggregate/{served.history.order_id}")
    expect(page.locator(".timeline li")).to_have_count(3)

    origin = urlsplit(served.url).netloc
    assert len(tab.requests) > 10
    assert tab_hosts(tab) == {origin}
    assert tab.errors == []


def test_a_phone_width_needs_no_sideways_scrolling(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served, width=390)
    page = tab.page
    tab.sign_in(*EVERY_ROLE)
    tab.no_horizontal_scroll()
    for view, shown in VIEWS.items():
        page.get_by_role("link", name=view, exact=True).click()
        expect(page.locator(shown).first).to_be_visible()
        tab.no_horizontal_scroll()
    page.goto(f"{served.url}/console#/aggregate/{served.history.order_id}?version=2")
    expect(page.locator('tr[data-attribute="status"]')).to_have_class("changed")
    tab.no_horizontal_scroll()
    tab.screenshot("console-phone")
    assert tab.errors == []


def test_the_token_is_typed_with_the_keyboard_and_kept_for_the_tab_only(
    tab_on: OpenTab, served: Served
) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.open()
    expect(page.get_by_label("Bearer token")).to_be_focused()
    page.keyboard.type("not-a-token")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Your token was not accepted")

    page.get_by_label("Bearer token").fill(served.token("auditor", sub="audit-7"))
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#who-text")).to_have_text("audit-7 (auditor)")
    stored = page.evaluate("[sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]

    # Another tab (another session) must sign in again.
    other = tab_on(served)
    other.open("log")
    expect(other.page.get_by_label("Bearer token")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Bearer token")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_the_configured_admin_signs_in_with_a_password(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    page = tab.page
    tab.open()
    # Signed out: no way to sign out is offered.
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    page.get_by_label("User name").fill(ADMIN_USER)
    tab.screenshot("console-sign-in")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in as admin").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
    expect(page.get_by_label("Password")).to_have_value("")

    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#who-text")).to_have_text(f"{ADMIN_USER} (admin, auditor, staff)")
    expect(page.get_by_role("heading", name="Log", exact=True)).to_be_focused()
    page.get_by_role("link", name="Read models").click()
    expect(page.locator("tr[data-name='orders']")).to_be_visible()
    # The token the login answered, kept for this tab only, like a pasted one.
    stored = page.evaluate("[sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]


def test_without_an_admin_only_the_token_is_offered(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    page = tab.page
    # A server with no admin configured says so (tests/api/test_login.py).
    page.route(
        "**/api/auth/login", lambda route: route.fulfill(json={"password": False}, status=200)
    )
    tab.open()
    expect(page.locator("#no-password-sign-in")).to_contain_text("No admin is configured")
    expect(page.get_by_label("Password")).to_have_count(0)
    expect(page.get_by_label("Bearer token")).to_be_focused()


@pytest.mark.slow  # two big bundles to parse and render: about 5 s on a quiet machine
def test_the_api_docs_work_offline(tab_on: OpenTab, served: Served) -> None:
    tab = tab_on(served)
    for docs in ("/docs", "/redoc"):
        tab.page.goto(f"{served.url}{docs}")
        expect(tab.page.get_by_role("heading", name=re.compile("^eventshop"))).to_be_visible()
    origin = urlsplit(served.url).netloc
    assert tab_hosts(tab) == {origin}, [url for url in tab.requests if origin not in url][:5]
    assert tab.errors == []
