from commands.service import Shop


def test_a_product_is_stored_and_read_back(shop: Shop) -> None:
    done = shop.add_product("MUG-1", "Mug", "12.50")
    assert done.position >= 1
    assert str(shop.product("MUG-1").price) == "12.50"
