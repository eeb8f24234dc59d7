"""The shop's JSON transcoder: the library's, reading stored events with orjson.

Stored events are written exactly as eventsourcing's ``JSONTranscoder`` writes them
(the standard library's encoder, values of other types as ``{"_type_": name, "_data_":
...}``); only reading is changed. The library reads with ``json`` and an object hook
called for every JSON object; here orjson parses the whole document in C, several
times faster, and one pass over the result turns the typed objects back into values.
Decoding is most of the cost of replaying the log (rebuilding a read model, auditing).

The result is the same as the library's: typed objects are revived inside out (the
hook sees inner objects first), an unknown type name fails the same way, and a document
orjson would read otherwise (``NaN`` and lone surrogates, which it refuses; integers
past 64 bits, which it turns into floats) is read by the library's own decoder instead,
as is any document holding a float.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoding,
    UUIDAsHex,
)

# The library's own transcodings decode a string with exactly these calls (after an
# assert that it is one): call them directly.
_DIRECT: dict[type[Transcoding], Callable[[Any], Any]] = {
    DatetimeAsISO: datetime.fromisoformat,
    DecimalAsStr: Decimal,
    UUIDAsHex: UUID,
}


class _Float(Exception):
    """A number orjson read as a float: perhaps an integer past 64 bits, which orjson
    reads as a float and ``json`` as an int. (The shop's events hold none: amounts are
    decimal strings.)"""


class ShopTranscoder(JSONTranscoder):
    """``JSONTranscoder`` with a faster ``decode`` giving the same values."""

    def __init__(self) -> None:
        super().__init__()
        self._revive = _reviver({}, self._decode_obj)

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        direct = {name: _DIRECT[type(t)] for name, t in self.names.items() if type(t) in _DIRECT}
        self._revive = _reviver(direct, self._decode_obj)

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to a rebuild's worker processes (within the mapper) as what it can read.
        return (_transcoder, (tuple(self.names.values()),))

    def decode(self, data: bytes) -> Any:
        try:
            return self._revive(orjson.loads(data))
        except (orjson.JSONDecodeError, _Float):
            return super().decode(data)


def _transcoder(transcodings: tuple[Transcoding, ...]) -> ShopTranscoder:
    transcoder = ShopTranscoder()
    for transcoding in transcodings:
        transcoder.register(transcoding)
    return transcoder


def _reviver(
    direct: dict[str, Callable[[Any], Any]], decode_obj: Callable[[dict[str, Any]], Any]
) -> Callable[[Any], Any]:
    """A function that revives the typed objects of a parsed document, inside out."""

    def typed(node: dict[str, Any]) -> Any:
        for key in ("_type_", "_data_"):
            kind = type(node[key])
            if kind is dict or kind is list:
                node[key] = revive(node[key])
            elif kind is float:
                raise _Float
        name, data = node["_type_"], node["_data_"]
        decode = direct.get(name) if type(name) is str and type(data) is str else None
        if decode is None:
            return decode_obj(node)  # the library's own lookup, call and errors
        return decode(data)

    def revive_object(node: dict[str, Any]) -> Any:
        # Replacing the value of a key while iterating is safe: the size stays.
        for key, value in node.items():
            kind = type(value)
            if kind is dict:
                if len(value) == 2 and "_type_" in value and "_data_" in value:
                    node[key] = typed(value)
                else:
                    node[key] = revive_object(value)
            elif kind is list:
                revive_list(value)
            elif kind is float:
                raise _Float
        return node

    def revive_list(items: list[Any]) -> None:
        for index, value in enumerate(items):
            kind = type(value)
            if kind is dict:
                if len(value) == 2 and "_type_" in value and "_data_" in value:
                    items[index] = typed(value)
                else:
                    items[index] = revive_object(value)
            elif kind is list:
                revive_list(value)
            elif kind is float:
                raise _Float

    def revive(document: Any) -> Any:
        kind = type(document)
        if kind is dict:
            if len(document) == 2 and "_type_" in document and "_data_" in document:
                return typed(document)
            return revive_object(document)
        if kind is list:
            revive_list(document)
        elif kind is float:
            raise _Float
        return document

    return revive
