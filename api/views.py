"""What every router's answer shares: versioned views, command results, the ETag.

A view is the JSON shape of one aggregate (or, later, of a read model). A command
answers with the view of the aggregate it changed plus ``position``, the place of its
last event in the global log, and an ``ETag`` naming the view's version.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from fastapi import Path, Response
from pydantic import BaseModel, Field

from api.bodies import SKU_PATTERN
from domain.values import CENT

SkuPath = Annotated[str, Path(pattern=SKU_PATTERN, description="the product's SKU")]


class View(BaseModel):
    """The shape of one aggregate as the API shows it."""

    version: int = Field(description="the aggregate's version; also its ETag")


class Committed(BaseModel):
    """Mixed in before a view, so that ``position`` comes after the view's fields."""

    position: int = Field(description="the global log position of the command's last event")


V = TypeVar("V", bound=View)
R = TypeVar("R", bound=Committed)


def money_text(amount: Decimal) -> str:
    """Money as the API writes it: a decimal string with two places."""
    return str(amount.quantize(CENT))


def etag(version: int) -> str:
    return f'"{version}"'


def shown(response: Response, view: V) -> V:
    """Answer a query with a view, and its version as the ETag."""
    response.headers["ETag"] = etag(view.version)
    return view


def committed(response: Response, view: View, result: type[R], position: int) -> R:
    """Answer a command: the view, its ETag, and the position of the command's last event."""
    shown(response, view)
    return result.model_validate({**view.model_dump(), "position": position})


T = TypeVar("T", bound=BaseModel)


class PageOf(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = Field(description="null on the last page")
