"""keyshift's own keys: the fingerprint key and the audit chain's key.

Each is found through a reference (DESIGN.md invariant 3) named by an environment variable,
``KEYSHIFT_FINGERPRINT_KEY`` and ``KEYSHIFT_AUDIT_KEY``; unset, it is the OS keyring entry
keyshift has always used, created on first use. A key is 32 random bytes kept as hex.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass

from console import secret_refs

SERVICE = "keyshift"
FINGERPRINT_ENV = "KEYSHIFT_FINGERPRINT_KEY"
FINGERPRINT_DEFAULT = f"keyring:{SERVICE}/installation-fingerprint-key"
AUDIT_ENV = "KEYSHIFT_AUDIT_KEY"
AUDIT_DEFAULT = f"keyring:{SERVICE}/audit-chain-key"


@dataclass(frozen=True)
class OwnKey:
    ref: str
    key: bytes = b""

    @property
    def key_id(self) -> str:
        """Names the key without revealing it (an HMAC of a fixed label under the key)."""
        return hmac.new(self.key, b"keyshift key id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"OwnKey({self.ref!r}, key_id={self.key_id})"


_lock = threading.Lock()
_cache: dict[str, OwnKey] = {}


def _load(env: str, default: str) -> OwnKey:
    ref = os.environ.get(env) or default
    with _lock:
        cached = _cache.get(ref)
        if cached is not None:
            return cached
        if ref == default:  # keyshift's own keyring entry: created on first use
            service, name = secret_refs.parse_ref(ref)
            stored = secret_refs.get(service, name)
            if stored is None:
                stored = secrets.token_hex(32)
                secret_refs.put(service, name, stored)
        else:
            stored = secret_refs.resolve(ref)
        try:
            key = bytes.fromhex(stored.strip())
        except ValueError:
            from console.errors import SecretError

            raise SecretError(
                f"{ref} (from ${env}) does not hold a key: expected hex",
                hint="make one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            ) from None
        loaded = OwnKey(ref, key)
        _cache[ref] = loaded
        return loaded


def fingerprint_key() -> OwnKey:
    return _load(FINGERPRINT_ENV, FINGERPRINT_DEFAULT)


def audit_key() -> OwnKey:
    return _load(AUDIT_ENV, AUDIT_DEFAULT)


def _reset_for_tests() -> None:
    with _lock:
        _cache.clear()
