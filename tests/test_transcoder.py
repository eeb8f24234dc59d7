"""The shop's transcoder reads stored events to exactly what the library's reads them to.

Every document is written by the library's own ``JSONTranscoder`` and read back by both;
the values must be equal and of the same types, all the way down.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.service import Shop
from eventstore.transcoder import ShopTranscoder

FIXTURE = Path(__file__).parent / "fixtures" / "events_v1.json"


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class PointAsDict(Transcoding):
    """A custom transcoding whose data is itself an object holding typed values."""

    type = Point
    name = "point"

    def encode(self, obj: Point) -> dict[str, Any]:
        return {"x": Decimal(obj.x), "y": [Decimal(obj.y)]}

    def decode(self, data: dict[str, Any]) -> Point:
        # The library revives inner objects first: the data arrives decoded.
        assert isinstance(data["x"], Decimal) and isinstance(data["y"][0], Decimal)
        return Point(int(data["x"]), int(data["y"][0]))


def both() -> tuple[JSONTranscoder, ShopTranscoder]:
    library, shop = JSONTranscoder(), ShopTranscoder()
    for transcoder in (library, shop):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), PointAsDict()):
            transcoder.register(transcoding)
    return library, shop


def typed(value: Any) -> Any:
    """The value with every leaf's type next to it, so that 1 != 1.0 != True."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # past 64 bits: orjson refuses
    st.floats(allow_nan=False),
    st.text(),
    st.sampled_from(["decimal_str", "uuid_hex", "datetime_iso", "point", "1.5", "0" * 32]),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.uuids(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])),
    st.builds(Point, st.integers(-99, 99), st.integers(-99, 99)),
)
documents = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "_type_", "_data_", "x"]) | st.text(), children
        )
    ),
    max_leaves=25,
)


# 200 random documents a run: the edge documents below are checked one by one, and every
# event the suite stores (the v1 fixture's among them) is read through this transcoder.
@settings(max_examples=200, deadline=None)
@given(documents)
def test_any_document_reads_the_same(document: Any) -> None:
    library, shop = both()
    try:
        data = library.encode(document)
    except (TranscodingNotRegisteredError, TypeError, ValueError):
        return  # what the library cannot write is never stored
    try:
        expected = library.decode(data)
    except Exception as error:  # e.g. a dict that looks typed but names no transcoding
        with pytest.raises(type(error)):
            shop.decode(data)
        return
    assert typed(shop.decode(data)) == typed(expected)


@pytest.mark.parametrize(
    "text",
    [
        '{"big": 123456789012345678901234567890}',  # orjson: integers of 64 bits at most
        '{"x": NaN, "y": -Infinity}',  # json writes these; orjson will not read them
        '{"lone": "\\ud800"}',  # a lone surrogate
        '{"_type_": "decimal_str", "_data_": "1.50"}',  # the whole document is typed
        '[{"_type_": "uuid_hex", "_data_": "' + "0" * 32 + '"}, [1, {"a": []}]]',
        '{"_type_": "decimal_str", "_data_": "1", "extra": 1}',  # three keys: not typed
        '{"_type_": "decimal_str"}',  # no data: not typed
        '"just text"',
        '{"a": 1, "a": {"_type_": "decimal_str", "_data_": "2"}}',  # a key twice: the last
        '{"huge": 1e400, "tiny": -0.0, "zero": -0}',
        '{"a": {"_type_": "point", "_data_": 123456789012345678901234567890}}',  # big, typed
    ],
)
def test_edge_documents_read_the_same(text: str) -> None:
    library, shop = both()
    data = text.encode()
    assert outcome(shop, data) == outcome(library, data)


def outcome(transcoder: JSONTranscoder, data: bytes) -> Any:
    """What reading ``data`` gives: its typed value, or the type of its error."""
    try:
        return typed(transcoder.decode(data))
    except Exception as error:
        return type(error)


def test_an_unknown_type_name_fails_as_in_the_library() -> None:
    library, shop = both()
    data = b'{"a": {"_type_": "no_such_type", "_data_": 1}}'
    with pytest.raises(TranscodingNotRegisteredError) as expected:
        library.decode(data)
    with pytest.raises(TranscodingNotRegisteredError) as got:
        shop.decode(data)
    assert str(got.value) == str(expected.value)


def test_stored_v1_events_read_the_same() -> None:
    library, shop = both()
    records = json.loads(FIXTURE.read_text())["events"]
    assert records
    for record in records:
        data = record["state"].encode()
        assert typed(shop.decode(data)) == typed(library.decode(data))


def test_the_shop_reads_its_events_with_it(tmp_path: Path) -> None:
    shop = Shop(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "s.db")}
    )
    try:
        assert isinstance(shop.mapper.transcoder, ShopTranscoder)
        done = shop.add_product("MUG-1", "Mug", "12.50")
        assert shop.product("MUG-1").price == Decimal("12.50")
        assert done.position >= 1
    finally:
        shop.close()


def test_a_datetime_comes_back_aware_and_exact() -> None:
    _, shop = both()
    moment = datetime(2026, 11, 28, 19, 36, 27, 377286, tzinfo=UTC)
    library = both()[0]
    assert shop.decode(library.encode({"t": moment})) == {"t": moment}
