"""keyshift's handling of secret values (DESIGN.md, security invariants 1-3).

- References ``keyring:<service>/<name>`` are resolved through the ``keyring`` package.
- Fingerprints are HMAC-SHA256(installation key, value); the installation key is created on
  first use and kept in the OS keyring, never on disk.
- Every value resolved or fingerprinted in this process is remembered (in memory) so the
  ``RedactingFilter`` can scrub it from any log record, and ``redact()`` from any text.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets as _stdlib_secrets
import string
import threading

import keyring
import keyring.errors

from console.errors import SecretError
from console.inventory import KEYRING_REF

INSTALLATION_SERVICE = "keyshift"
INSTALLATION_KEY_NAME = "installation-fingerprint-key"
REDACTED = "[redacted]"
_MIN_REDACT_LEN = 6  # shorter strings would redact ordinary words; no real secret is that short

_seen_lock = threading.Lock()
_seen: set[str] = set()
_installation_key: bytes | None = None


def remember(value: str) -> None:
    """Mark a value as secret for this process, so logs and redact() scrub it."""
    if value and len(value) >= _MIN_REDACT_LEN:
        with _seen_lock:
            _seen.add(value)


def redact(text: str) -> str:
    with _seen_lock:
        values = sorted(_seen, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def parse_ref(ref: str) -> tuple[str, str]:
    match = KEYRING_REF.match(ref)
    if not match:
        raise SecretError(f"not a keyring reference: {ref!r}", hint="use keyring:<service>/<name>")
    return match["service"], match["name"]


def _backend_error(exc: Exception) -> SecretError:
    return SecretError(
        f"the OS keyring is unavailable ({type(exc).__name__})",
        hint="run keyshift inside a desktop session, or through `make run` which starts one",
    )


def get(service: str, name: str) -> str | None:
    try:
        value = keyring.get_password(service, name)
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None
    if value is not None:
        remember(value)
    return value


def put(service: str, name: str, value: str) -> None:
    remember(value)
    try:
        keyring.set_password(service, name, value)
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None


def delete(service: str, name: str) -> bool:
    try:
        keyring.delete_password(service, name)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None
    return True


def resolve(ref: str) -> str:
    """The value behind ``keyring:<service>/<name>``; an error naming the reference if absent."""
    service, name = parse_ref(ref)
    value = get(service, name)
    if value is None:
        raise SecretError(
            f"{ref} is not in the keyring",
            hint=f"store it with: keyshift secret set {service}/{name}",
        )
    return value


def store(name: str, value: str) -> str:
    """Store a value under ``service/name`` (or ``keyring:service/name``); returns the reference."""
    ref = name if name.startswith("keyring:") else f"keyring:{name}"
    service, key = parse_ref(ref)
    if not value:
        raise SecretError("refusing to store an empty value")
    put(service, key, value)
    return ref


def installation_key() -> bytes:
    """The HMAC key for fingerprints, created on first use and kept in the OS keyring."""
    global _installation_key
    if _installation_key is not None:
        return _installation_key
    stored = get(INSTALLATION_SERVICE, INSTALLATION_KEY_NAME)
    if stored is None:
        stored = _stdlib_secrets.token_hex(32)
        put(INSTALLATION_SERVICE, INSTALLATION_KEY_NAME, stored)
    _installation_key = bytes.fromhex(stored)
    return _installation_key


def fingerprint(value: str | bytes) -> str:
    """HMAC-SHA256(installation key, value), hex. Equal values give equal fingerprints."""
    raw = value.encode() if isinstance(value, str) else value
    if isinstance(value, str):
        remember(value)
    digest = hmac.new(installation_key(), raw, hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"


_ALPHABETS = {
    "alnum": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
    "urlsafe": string.ascii_letters + string.digits + "-_",
    "printable": string.ascii_letters + string.digits + "!#%+-.:=@^_~",
}


def generate(length: int = 40, alphabet: str = "alnum", prefix: str = "") -> str:
    """A new random secret value (remembered for redaction)."""
    chars = _ALPHABETS[alphabet]
    value = prefix + "".join(_stdlib_secrets.choice(chars) for _ in range(length))
    remember(value)
    return value


class RedactingFilter(logging.Filter):
    """Scrubs every value keyshift has read in this process from log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    target = logger or logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def _reset_for_tests() -> None:
    global _installation_key
    _installation_key = None
