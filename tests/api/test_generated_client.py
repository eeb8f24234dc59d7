"""A Python client generated from the served /openapi.json with openapi-python-client runs a
purchase against the shop served on PostgreSQL, and reads the NDJSON export line by line
with the item model the document names."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

# The server of the browser tests: the app served by uvicorn in a thread.
from tests.browser.conftest import Served, served_on_postgres  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
# In a venv of its own (it pins typer below the shop's): `make test` makes it.
GENERATOR = ROOT / ".venv-codegen" / "bin" / "openapi-python-client"
# NDJSON is a type the generator does not know: a client hands it over as bytes (a File),
# to be read line by line with the item model (the document's itemSchema).
CONFIG = """\
package_name_override: eventshop_client
post_hooks: []
content_type_overrides:
  application/x-ndjson: application/octet-stream
"""


@pytest.fixture
def generated(served_on_postgres: Served, tmp_path: Path) -> Iterator[ModuleType]:  # noqa: F811
    if not GENERATOR.exists():
        pytest.fail(f"{GENERATOR} is missing: make .venv-codegen/.installed", pytrace=False)
    document = httpx.get(f"{served_on_postgres.url}/openapi.json").json()
    (tmp_path / "openapi.json").write_text(json.dumps(document))
    (tmp_path / "config.yaml").write_text(CONFIG)
    made = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--config",
            str(tmp_path / "config.yaml"),
            "--output-path",
            str(tmp_path / "client" / "eventshop_client"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    # Every operation and answer was understood: the generator warns of any it skipped.
    assert "Warning" not in made.stdout + made.stderr, made.stdout + made.stderr
    sys.path.insert(0, str(tmp_path / "client"))
    try:
        yield importlib.import_module("eventshop_client")
    finally:
        sys.path.remove(str(tmp_path / "client"))
        for name in [m for m in sys.modules if m.split(".")[0] == "eventshop_client"]:
            del sys.modules[name]


def _module(client: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{client.__name__}.{name}")


def test_a_generated_client_runs_a_purchase(
    generated: ModuleType,
    served_on_postgres: Served,  # noqa: F811
) -> None:
    api, models = "api", _module(generated, "models")
    served = served_on_postgres

    def signed_in(*roles: str, sub: str) -> Any:
        token = served.token(*roles, sub=sub)
        return generated.AuthenticatedClient(
            base_url=served.url, token=token, raise_on_unexpected_status=True
        )

    staff, carol, auditor = (
        signed_in("staff", sub="staff-9"),
        signed_in("customer", sub="carol"),
        signed_in("auditor", sub="audit-9"),
    )
    add_product = _module(generated, f"{api}.products.add_product")
    added = add_product.sync_detailed(
        client=staff, body=models.AddProduct(sku="LAMP-9", name="Lamp", price="40.00")
    )
    assert added.status_code == 201
    assert isinstance(added.parsed, models.ProductResult)
    assert added.headers["Location"] == "/api/products/LAMP-9"
    assert added.headers["ETag"] == '"1"'

    receive = _module(generated, f"{api}.stock.receive_stock")
    stock = receive.sync(client=staff, sku="LAMP-9", body=models.ReceiveStock(quantity=3))
    assert isinstance(stock, models.StockResult)
    assert stock.available == 3

    cart = _module(generated, f"{api}.carts.open_cart").sync(client=carol, body=models.OpenCart())
    assert isinstance(cart, models.CartResult)
    assert cart.status == models.CartStatus.OPEN
    add_item = _module(generated, f"{api}.carts.add_cart_item")
    cart = add_item.sync(
        client=carol, cart_id=cart.id, body=models.AddItem(sku="LAMP-9", quantity=2)
    )
    assert cart.total == "80.00"

    address = models.AddressIn(
        name="Carol", line1="1 Elm St", city="Oslo", postal_code="0150", country="NO"
    )
    order = _module(generated, f"{api}.carts.check_out_cart").sync(
        client=carol,
        cart_id=cart.id,
        body=models.CheckOut(shipping_address=address, email="carol@example.org"),
    )
    assert isinstance(order, models.OrderResult)
    assert order.status == models.OrderStatus.PLACED
    paid = _module(generated, f"{api}.orders.pay_order").sync(
        client=carol, order_id=order.id, body=models.Pay(amount=order.total, reference="PAY-9")
    )
    assert paid.status == models.OrderStatus.PAID

    # The read side, once it holds the payment, as the order's owner sees it.
    shown = _module(generated, f"{api}.orders.get_order").sync_detailed(
        client=carol, order_id=order.id, min_position=paid.position
    )
    assert isinstance(shown.parsed, models.OrderDetail)
    assert shown.parsed.status == models.OrderStatus.PAID
    assert [change.status for change in shown.parsed.status_history] == [
        models.OrderStatus.PLACED,
        models.OrderStatus.PAID,
    ]
    assert int(shown.headers["X-Projection-Position"]) >= paid.position

    # The NDJSON export: each line one ExportedEvent, the model the document names.
    export = _module(generated, f"{api}.audit.export_audit_log").sync(client=auditor)
    lines = export.payload.read().decode().splitlines()
    events = [models.ExportedEvent.from_dict(json.loads(line)) for line in lines]
    assert events[-1].position == paid.position
    assert events[-1].type_ == "Order.Paid"
