"""Customers: what each has ordered and spent, from the customers read model."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request

from api.deps import Caller, Page
from api.errors import problem_responses
from api.freshness import read_model
from api.text import SINGLE_LINE
from api.views import CustomerDetail, CustomerSummary, PageOf
from domain.errors import NotFound
from projections.readmodels.customers import Customers as CustomersModel

router = APIRouter(prefix="/api/customers", tags=["customers"])
Customers = Annotated[CustomersModel, Depends(read_model("customers"))]
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
