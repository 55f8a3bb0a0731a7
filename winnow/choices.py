"""Options chosen by name (a truncation side, an aggregation, a compression ...): one base for their enums."""

from __future__ import annotations

import re
from enum import Enum

from winnow.errors import InvalidArgumentError


class Choice(str, Enum):
    """A str enum whose ``str()`` is its value and whose :meth:`parse` takes a member or its value (any case);
    an unknown value raises :class:`InvalidArgumentError` naming it and listing the choices."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def label(cls) -> str:
        """What the error calls this option (default: the class name in words)."""
        return re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__).lower()

    @classmethod
    def parse(cls, value):
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidArgumentError(
                f"unknown {cls.label()} {value!r}; choose one of: {', '.join(c.value for c in cls)}"
            ) from None
