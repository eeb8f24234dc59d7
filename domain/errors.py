"""Domain errors: each says exactly which rule was broken and why.

The API maps each class to one HTTP status in one place (``api/errors.py``).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a command can be refused with."""

    title = "Command refused"

    def __init__(self, detail: str, **info: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.info = info


class InvalidValue(DomainError):
    """A value breaks its own rules (a negative price, a malformed SKU)."""

    title = "Invalid value"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, field=field)
        self.field = field


class NotFound(DomainError):
    """The product, cart or order does not exist."""

    title = "Not found"


class AlreadyExists(DomainError):
    """The thing to create exists already (a second product with one SKU)."""

    title = "Already exists"


class RuleBroken(DomainError):
    """The command is well formed but the aggregate's state does not allow it."""

    title = "Rule broken"


class InsufficientStock(RuleBroken):
    """Some SKUs have fewer units available than asked for.

    ``short`` lists one entry per SKU: ``{"sku", "requested", "available"}``.
    """

    title = "Insufficient stock"

    def __init__(self, short: list[dict[str, Any]]) -> None:
        names = ", ".join(
            f"{s['sku']} (requested {s['requested']}, available {s['available']})" for s in short
        )
        super().__init__(f"Not enough stock for: {names}", short=short)
        self.short = short


class StaleVersion(DomainError):
    """The client named a version (If-Match) that is no longer the current one."""

    title = "Stale version"

    def __init__(self, expected: int | frozenset[int], actual: int) -> None:
        versions = [expected] if isinstance(expected, int) else sorted(expected)
        wanted = " or ".join(map(str, versions))
        super().__init__(
            f"Expected version {wanted} but the current version is {actual}"
            if versions
            else f"No version named can match; the current version is {actual}",
            expected=expected if isinstance(expected, int) else sorted(expected),
            actual=actual,
        )


class ConcurrencyConflict(DomainError):
    """A concurrent write kept winning the race after every retry."""

    title = "Concurrency conflict"


class Busy(DomainError):
    """The command could not get its turn in time: the aggregates it needs were busy.

    Nothing was recorded; the same command may simply be sent again.
    """

    title = "Busy"
