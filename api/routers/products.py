"""The catalogue: add, rename and reprice products; read one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from api.bodies import AddProduct, ChangeProduct
from api.deps import Caller, Command, Page, StaffCommand, for_command, in_thread
from api.errors import problem_responses
from api.freshness import read_model
from api.openapi import LOCATION, answer
from api.views import (
    PageOf,
    ProductListing,
    ProductResult,
    SkuPath,
    committed,
    product_view,
    shown,
)
from projections.readmodels.catalogue import Catalogue as CatalogueModel

router = APIRouter(prefix="/api/products", tags=["products"])
# Adding a product names no version of it: there is none yet.
StaffAdds = Annotated[Command, Depends(for_command("staff", versioned=False))]


@router.post(
    "",
    status_code=201,
    response_model=ProductResult,
    responses={**answer(201, LOCATION), **problem_responses(400, 401, 403, 409, 413, 422, 503)},
)
async def add_product(body: AddProduct, response: Response, command: StaffAdds) -> ProductResult:
    """Add a product to the catalogue (its stock starts empty)."""
    done = await in_thread(command.shop.add_product, body.sku, body.name, body.price)
    response.headers["Location"] = f"{router.prefix}/{body.sku}"
    return committed(response, product_view(done.aggregate), ProductResult, done.position)


@router.patch(
    "/{sku}",
    response_model=ProductResult,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 422, 503),
)
async def change_product(
    sku: SkuPath, body: ChangeProduct, response: Response, command: StaffCommand
) -> ProductResult:
    """Rename and/or reprice; carts keep the price they captured."""
    done = await in_thread(
        command.shop.change_product,
        sku,
        body.name,
        body.price,
        expected_version=command.expected_version,
    )
    return committed(response, product_view(done.aggregate), ProductResult, done.position)


Catalogue = Annotated[CatalogueModel, Depends(read_model("catalogue"))]


@router.get("", response_model=PageOf[ProductListing], responses=problem_responses(401, 422, 503))
def list_products(_: Caller, page: Page, catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue by SKU, with price and available units (anyone with a token)."""
    return catalogue.list_products(page.limit, page.cursor)


@router.get(
    "/{sku}", response_model=ProductListing, responses=problem_responses(401, 404, 422, 503)
)
def get_product(
    sku: SkuPath, response: Response, _: Caller, catalogue: Catalogue
) -> ProductListing:
    """One product (anyone with a token)."""
    return shown(response, ProductListing.model_validate(catalogue.get_product(sku)))
