"""Fingerprints: HMAC-SHA256(installation key, value) (invariant 2).

Equal fingerprints reveal reuse without revealing the value. The installation key is one of
keyshift's own secrets, created on first use and kept where keyshift keeps its secrets (the
OS keyring), never on disk.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

from console import secret_refs
from rotators.values import SecretValue

INSTALLATION_SERVICE = "keyshift"
INSTALLATION_KEY_NAME = "installation-fingerprint-key"

_lock = threading.Lock()
_installation_key: bytes | None = None


def installation_key() -> bytes:
    global _installation_key
    with _lock:
        if _installation_key is not None:
            return _installation_key
        stored = secret_refs.get(INSTALLATION_SERVICE, INSTALLATION_KEY_NAME)
        if stored is None:
            stored = secrets.token_hex(32)
            secret_refs.put(INSTALLATION_SERVICE, INSTALLATION_KEY_NAME, stored)
        _installation_key = bytes.fromhex(stored)
        return _installation_key


def fingerprint(value: str | bytes | SecretValue) -> str:
    """``hmac-sha256:<32 hex>``; equal values give equal fingerprints."""
    if isinstance(value, SecretValue):
        value = value.reveal()
    raw = value.encode() if isinstance(value, str) else value
    digest = hmac.new(installation_key(), raw, hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"


def _reset_for_tests() -> None:
    global _installation_key
    with _lock:
        _installation_key = None
