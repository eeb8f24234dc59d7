"""Customer: the erasures of a customer's personal data."""

from __future__ import annotations

from domain.customer import AlreadyErased, Customer
from domain.order import ERASED_ADDRESS, Order
from domain.personal import ERASED, personal_data
from tests.domain.scenario import ev, given

REGISTERED = ev(Customer.Registered, customer_id="cus-1")
ERASED_EVENT = ev(Customer.Erased, customer_id="cus-1", still_plain=[])


def test_a_first_erasure_registers_the_customer_and_records_it() -> None:
    customer = (
        given()
        .when(lambda _: _erased(Customer.register("cus-1"), ["o-2/1", "o-1/1"]))
        .then(REGISTERED, ev(Customer.Erased, customer_id="cus-1", still_plain=["o-1/1", "o-2/1"]))
    )
    assert (customer.erasures, customer.still_plain) == (1, ["o-1/1", "o-2/1"])


def test_an_erased_customer_with_nothing_stored_since_is_not_erased_again() -> None:
    given(REGISTERED, ERASED_EVENT).when(
        lambda customer: customer.erase([], holds_data=False)
    ).then_raises(AlreadyErased, customer_id="cus-1")


def test_a_customer_who_stored_data_since_is_erased_again() -> None:
    customer = (
        given(REGISTERED, ERASED_EVENT)
        .when(lambda customer: customer.erase([], holds_data=True))
        .then(ERASED_EVENT)
    )
    assert customer.erasures == 2


def test_an_order_declares_its_email_and_address_personal_to_its_customer() -> None:
    declared = personal_data(Order.Placed)
    assert declared is not None and declared.subject == "customer_id"
    assert declared.fields == ("email", "shipping_address")
    assert declared.erased_value("email") == ERASED
    assert declared.erased_value("shipping_address") == ERASED_ADDRESS
    assert declared.erased_value("shipping_address") is not ERASED_ADDRESS
    assert personal_data(Order.Paid) is None


def _erased(customer: Customer, still_plain: list[str]) -> Customer:
    customer.erase(still_plain, holds_data=True)
    return customer
