"""Secret values in memory: a wrapper that never prints, canonical KV values, generation.

Rotators and the engine pass values as ``SecretValue`` so an f-string, a ``repr`` in a
traceback, a JSON dump or a log call shows ``[redacted]`` instead of the value: the value only
comes out through ``reveal()``, at the one call that writes or checks it. Lives in rotators/
(not console/) because third-party rotators use it and rotators never import console.
"""

from __future__ import annotations

import hmac
import json
import math
import secrets
import string
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
MIN_GENERATED_BITS = 128

ALPHABETS = {
    "alnum": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
    "urlsafe": string.ascii_letters + string.digits + "-_",
    "printable": string.ascii_letters + string.digits + "!#%+-.:=@^_~",
}


class SecretValue:
    """A secret held in memory. Never equal to a plain string, never printed, never pickled."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a SecretValue holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue({REDACTED})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("SecretValue", self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a SecretValue cannot be pickled")


def canonical_value(data: Mapping[str, Any]) -> str:
    """The string fingerprinted for a whole multi-key secret (a KV v2 secret, a JSON Secrets
    Manager string): a lone string value as-is, so it matches the same value held elsewhere
    (an SSM parameter, an env file), else canonical JSON of every key."""
    plain = {k: (v.reveal() if isinstance(v, SecretValue) else v) for k, v in data.items()}
    if len(plain) == 1:
        (only,) = plain.values()
        if isinstance(only, str):
            return only
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entropy_bits(length: int, alphabet: str) -> float:
    """Bits of entropy of ``length`` characters drawn uniformly from ``alphabet`` (a name)."""
    return length * math.log2(len(ALPHABETS[alphabet]))


def min_length(alphabet: str, bits: int = MIN_GENERATED_BITS) -> int:
    return math.ceil(bits / math.log2(len(ALPHABETS[alphabet])))


def generate(length: int, alphabet: str = "alnum", prefix: str = "") -> SecretValue:
    """A new random value from the OS's CSPRNG; the prefix adds no entropy."""
    chars = ALPHABETS[alphabet]
    return SecretValue(prefix + "".join(secrets.choice(chars) for _ in range(length)))
