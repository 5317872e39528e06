"""Small helpers the delivery targets share."""

from __future__ import annotations

from collections.abc import Mapping

from rotators.base import RunContext, Value


def matches(ctx: RunContext, value: Value | None, expected: Mapping[str, str]) -> bool:
    """Whether ``value`` holds every part of ``expected`` (part -> fingerprint)."""
    if not value or not expected:
        return False
    return all(p in value and ctx.fingerprint(value[p]) == fp for p, fp in expected.items())


def field_list(fields: Mapping[str, str]) -> str:
    return ", ".join(f for f in fields.values() if f) or "the value"
