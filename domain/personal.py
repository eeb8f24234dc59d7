"""Personal data in events: which fields are, and whose.

An event class declares its personal fields with a class attribute ``personal_data``
(a :class:`PersonalData`): the field naming the data subject (a customer id) and, for
each personal field, what it reads as once the subject's data is erased. The domain only
declares; the persistence layer (``eventstore/personal.py``) encrypts those fields with
the subject's key before an event is stored, and destroying that key erases them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

ERASED = "[erased]"
"""What a personal text reads as once its subject's data is erased."""


@dataclass(frozen=True)
class PersonalData:
    """The personal fields of an event class and the field naming their subject."""

    subject: str
    erased: Mapping[str, Any] = field(default_factory=dict)
    """Each personal field, with what it reads as once erased."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "erased", MappingProxyType(dict(self.erased)))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.erased)

    def erased_value(self, name: str) -> Any:
        """A fresh copy of what field ``name`` reads as once erased (never shared)."""
        value = self.erased[name]
        return dict(value) if isinstance(value, Mapping) else value


def personal_data(event_class: type[Any]) -> PersonalData | None:
    """What ``event_class`` declares personal (None: nothing)."""
    declared = getattr(event_class, "personal_data", None)
    return declared if isinstance(declared, PersonalData) else None
