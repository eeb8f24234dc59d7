"""The catalogue: add, rename and reprice products; read one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.auth import Principal
from api.deps import Caller, ExpectedVersion, ShopDep, require
from api.errors import problem_responses
from api.routers.shapes import Committed, SkuPath, View, committed, money_text, shown
from commands.models import AddProduct, ChangeProduct
from domain.product import Product

router = APIRouter(prefix="/api/products", tags=["products"])
Staff = Annotated[Principal, Depends(require("staff"))]


class ProductView(View):
    sku: str
    name: str
    price: str


class ProductResult(Committed, ProductView):
    pass


def product_view(product: Product) -> ProductView:
    return ProductView(
        sku=product.sku,
        name=product.name,
        price=money_text(product.price),
        version=product.version,
    )


@router.post(
    "",
    status_code=201,
    response_model=ProductResult,
    responses=problem_responses(400, 401, 403, 409, 413, 422),
)
def add_product(body: AddProduct, response: Response, shop: ShopDep, _: Staff) -> ProductResult:
    """Add a product to the catalogue (its stock starts empty)."""
    done = shop.add_product(body.sku, body.name, body.price)
    response.headers["Location"] = f"{router.prefix}/{body.sku}"
    return committed(response, product_view(done.aggregate), ProductResult, done.position)


@router.patch(
    "/{sku}",
    response_model=ProductResult,
    responses=problem_responses(400, 401, 403, 404, 412, 413, 422),
)
def change_product(
    sku: SkuPath,
    body: ChangeProduct,
    response: Response,
    shop: ShopDep,
    version: ExpectedVersion,
    _: Staff,
) -> ProductResult:
    """Rename and/or reprice; carts keep the price they captured."""
    done = shop.change_product(sku, body.name, body.price, expected_version=version)
    return committed(response, product_view(done.aggregate), ProductResult, done.position)


@router.get("/{sku}", response_model=ProductView, responses=problem_responses(401, 404, 422))
def get_product(sku: SkuPath, response: Response, shop: ShopDep, _: Caller) -> ProductView:
    """One product (anyone with a token)."""
    return shown(response, product_view(shop.product(sku)))
