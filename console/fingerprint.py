"""Fingerprints: HMAC-SHA256(installation key, value) (invariant 2).

Equal fingerprints reveal reuse without revealing the value. The installation key is one of
keyshift's own secrets (console/own_keys.py): by default created on first use in the OS
keyring; on a server, wherever ``KEYSHIFT_FINGERPRINT_KEY`` refers (a 0600 file, systemd's
credentials, the environment).
"""

from __future__ import annotations

import hashlib
import hmac

from console import own_keys
from rotators.values import SecretValue


def installation_key() -> bytes:
    return own_keys.fingerprint_key().key


def fingerprint(value: str | bytes | SecretValue) -> str:
    """``hmac-sha256:<32 hex>``; equal values give equal fingerprints."""
    if isinstance(value, SecretValue):
        value = value.reveal()
    raw = value.encode() if isinstance(value, str) else value
    digest = hmac.new(installation_key(), raw, hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"


def _reset_for_tests() -> None:
    own_keys._reset_for_tests()
