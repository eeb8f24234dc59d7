"""Text in requests: the one rule for every text field of a body, query or path.

``SingleLine`` and ``MultiLine`` refuse what the domain refuses (:func:`domain.values.plain`):
control characters, save tab and line feed in multi-line text. A request holding one is
refused with 422 naming the field before anything is loaded; the domain checks again,
so that no path around the HTTP edge stores such text. The JSON Schema ``pattern`` of
each says the same to clients (and to the fuzzer).

To constrain such text further, put the constraints first, so that they stay in the
JSON Schema: ``Annotated[str, StringConstraints(min_length=1), SINGLE_LINE]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from domain.errors import InvalidValue
from domain.values import plain

# The refused characters of domain.values, in ECMA-262 syntax. Lone surrogates are left
# out: a pattern without the `u` flag would read every astral character (an emoji) as
# two of them; JSON Schema cannot express them, the validator refuses them all the same.
SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
MULTI_LINE_PATTERN = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"


@dataclass(frozen=True)
class PlainText:
    """Annotation: the text holds no control character (tab and line feed allowed where
    ``multiline``); else a 422 naming the field and the character."""

    multiline: bool

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.with_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        shown: dict[str, Any] = handler(schema)
        # A field with a pattern of its own (an e-mail address) keeps it: it says more.
        shown.setdefault("pattern", MULTI_LINE_PATTERN if self.multiline else SINGLE_LINE_PATTERN)
        return shown

    def _check(self, value: str, info: ValidationInfo) -> str:
        try:
            return plain(value, info.field_name or "text", multiline=self.multiline)
        except InvalidValue as error:
            raise PydanticCustomError("control_character", error.detail) from None


SINGLE_LINE = PlainText(multiline=False)
MULTI_LINE = PlainText(multiline=True)

SingleLine = Annotated[str, SINGLE_LINE]
"""Text on one line: no control characters at all."""

MultiLine = Annotated[str, MULTI_LINE]
"""Text that may run over several lines: tab and line feed, no other control character."""
