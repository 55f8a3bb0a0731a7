"""Metadata filters, as pure functions over a document's metadata.

A filter is a mapping from metadata field to a condition; every field must match (AND):

    {"lang": "en"}                          equality (same as {"lang": {"$eq": "en"}})
    {"year": {"$in": [2023, 2024]}}         membership
    {"lang": "en", "year": {"$in": [2024]}} both

Equality is JSON equality: ``1`` does not match ``true``, ``"1"`` does not match ``1``; a document
without the field never matches. Filters narrow the first stage *before* its top-k, so a filtered
search still returns k hits when k matching documents exist.
"""

from __future__ import annotations

from typing import Any, Mapping

from winnow.errors import InvalidArgumentError

OPERATORS = ("$eq", "$in")
MAX_IN_VALUES = 1024
_SCALARS = (str, int, float, bool, type(None))


def check_filter(spec: Any) -> dict[str, tuple[str, Any]]:
    """Validate a filter; returns ``{field: (operator, operand)}`` in normal form."""
    if not isinstance(spec, Mapping):
        shown = repr(spec) if len(repr(spec)) <= 80 else repr(spec)[:77] + "..."
        raise InvalidArgumentError(
            f'filter must be a JSON object of field -> condition, e.g. {{"lang": "en"}}; '
            f"got {type(spec).__name__} {shown}"
        )
    out: dict[str, tuple[str, Any]] = {}
    for field, cond in spec.items():
        if not isinstance(field, str) or not field:
            raise InvalidArgumentError(f"filter field names must be non-empty strings, got {field!r}")
        if isinstance(cond, Mapping):
            if len(cond) != 1 or next(iter(cond)) not in OPERATORS:
                raise InvalidArgumentError(
                    f"filter on {field!r}: expected one operator of {', '.join(OPERATORS)}, got {sorted(cond)!r}"
                )
            op, operand = next(iter(cond.items()))
        else:
            op, operand = "$eq", cond
        if op == "$in":
            if not isinstance(operand, (list, tuple)) or not all(isinstance(v, _SCALARS) for v in operand):
                raise InvalidArgumentError(f"filter on {field!r}: $in takes a list of scalars, got {operand!r}")
            if len(operand) > MAX_IN_VALUES:
                raise InvalidArgumentError(
                    f"filter on {field!r}: $in takes at most {MAX_IN_VALUES} values, got {len(operand)}"
                )
            operand = tuple(operand)
        elif not isinstance(operand, _SCALARS):
            raise InvalidArgumentError(
                f"filter on {field!r}: equality takes a string, number, boolean or null, got {operand!r}"
            )
        out[field] = (op, operand)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def matches(normal: Mapping[str, tuple[str, Any]], metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` satisfies a filter in the normal form :func:`check_filter` returns."""
    for field, (op, operand) in normal.items():
        if field not in metadata:
            return False
        value = metadata[field]
        if op == "$eq" and not _same(value, operand):
            return False
        if op == "$in" and not any(_same(value, v) for v in operand):
            return False
    return True
