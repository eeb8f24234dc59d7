"""Customers: what each has ordered and spent, from the customers read model."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from api.auth import Principal
from api.deps import Caller, Page, ShopDep, in_thread, require
from api.errors import problem_responses
from api.freshness import read_model
from api.text import SINGLE_LINE
from api.views import CustomerDetail, CustomerSummary, ErasureView, PageOf, PersonalDataView
from domain.errors import NotFound
from projections.readmodels.customers import Customers as CustomersModel
from projections.readmodels.orders import Orders as OrdersModel

router = APIRouter(prefix="/api/customers", tags=["customers"])
Customers = Annotated[CustomersModel, Depends(read_model("customers"))]
Orders = Annotated[OrdersModel, Depends(read_model("orders"))]
Admin = Annotated[Principal, Depends(require("admin"))]
CustomerId = Annotated[
    str,
    Path(min_length=1, max_length=100, description="the customer's id: the `sub` of its tokens"),
    SINGLE_LINE,
]


@router.get("", response_model=PageOf[CustomerSummary], responses=problem_responses(401, 422, 503))
def list_customers(caller: Caller, page: Page, customers: Customers) -> dict[str, Any]:
    """Customers who have ordered, by id, with their orders, spend and last order: every
    one for staff, auditors and admins; a customer sees only itself."""
    return customers.list_customers(page.limit, page.cursor, only=caller.confined_to("read"))


@router.get(
    "/{customer_id}",
    response_model=CustomerDetail,
    responses=problem_responses(401, 404, 422, 503),
)
def get_customer(
    customer_id: CustomerId, request: Request, caller: Caller, customers: Customers
) -> CustomerDetail:
    """One customer: itself, or any for staff, auditors and admins (another customer's
    answers 404, as if absent). A customer who never ordered is known only to itself."""
    absent = NotFound(f"Customer {customer_id} does not exist")
    if caller.confined_to("read") not in (None, customer_id):
        raise absent
    found = customers.get_customer(customer_id)
    if not found["orders"] and customer_id != caller.sub:
        raise absent
    orders_list = request.app.url_path_for("list_orders")
    all_orders = f"{orders_list}?{urlencode({'customer_id': customer_id})}"
    return CustomerDetail.model_validate({**found, "all_orders": all_orders})


@router.post(
    "/{customer_id}/erasure",
    response_model=ErasureView,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def erase_customer(
    customer_id: CustomerId, shop: ShopDep, customers: Customers, _: Admin
) -> ErasureView:
    """Erase the customer's personal data (GDPR Art. 17; admin): its data key is
    destroyed, so the e-mail and address in its events read as `[erased]` from now on,
    everywhere, and `Customer.Erased` is recorded (read models purge their copies when
    they reach it). Events are never rewritten: `still_plain` lists the customer's
    events stored before encryption, which still hold its data in plain text.

    Asked again with nothing stored since, it answers with that erasure
    (`already_erased`) and records nothing; a customer the shop holds nothing of is 404.
    The answer comes once no process can still hold the key or what it decrypted
    (twice EVENTSHOP_PERSONAL_KEY_CACHE_SECONDS: 6 s by default)."""
    order_ids = [UUID(order_id) for order_id in customers.order_ids(customer_id)]
    done = await in_thread(shop.erase_customer, customer_id, order_ids)
    return ErasureView.model_validate(
        {
            "customer_id": customer_id,
            "already_erased": done.replayed,
            "erasures": done.aggregate.erasures,
            "still_plain": _plain_events(done.aggregate.still_plain),
            "position": done.position,
        }
    )


@router.get(
    "/{customer_id}/data",
    response_model=PersonalDataView,
    responses=problem_responses(401, 403, 404, 422, 503),
)
def get_customer_data(
    customer_id: CustomerId, caller: Caller, shop: ShopDep, customers: Customers, orders: Orders
) -> PersonalDataView:
    """Every piece of personal data held about the customer, as JSON (GDPR Art. 15 and
    20): the customer itself, or an admin (anyone else: 403). Each order's e-mail and
    shipping address, from the orders read model (`[erased]` once erased), whether and
    how often the customer was erased, and which of its events hold its data in plain
    text (stored before encryption)."""
    if caller.sub != customer_id and not caller.has("admin"):
        raise HTTPException(403, "personal data is shown to its customer and to admins only")
    held = orders.personal_data(customer_id)
    record = shop.customer(customer_id)
    if not held and record is None and caller.sub != customer_id:
        raise NotFound(f"Customer {customer_id} does not exist", customer_id=customer_id)
    erased = record is not None and record.erasures > 0 and not shop.data_keys.has_key(customer_id)
    order_ids = [UUID(order_id) for order_id in customers.order_ids(customer_id)]
    return PersonalDataView.model_validate(
        {
            "customer_id": customer_id,
            "erased": erased,
            "erasures": record.erasures if record is not None else 0,
            "orders": held,
            "still_plain": _plain_events(shop.plain_personal_events(order_ids)),
        }
    )


def _plain_events(ids: list[str]) -> list[dict[str, Any]]:
    events = (event_id.rpartition("/") for event_id in ids)
    return [{"aggregate_id": oid, "version": int(version)} for oid, _, version in events]
