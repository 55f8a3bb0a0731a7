"""What every training config shares: its fields' rules, checked with one wording of the error, and the
config as JSON for cards (enums by their value)."""

from __future__ import annotations

from dataclasses import asdict
from enum import Enum
from typing import Iterable

from winnow.errors import InvalidArgumentError


def check_rules(config, rules: Iterable[tuple[str, bool, str]]) -> None:
    """``rules``: (field name, whether its value is allowed, what is allowed); the first broken one raises,
    naming the field, what it must be and the value given."""
    for name, ok, rule in rules:
        if not ok:
            raise InvalidArgumentError(f"{name} must be {rule}, got {getattr(config, name)!r}")


def config_json(config) -> dict:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(config).items()}
