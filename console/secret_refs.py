"""keyshift's own secrets, by reference (invariant 3): ``keyring:<service>/<name>``.

References are resolved through the ``keyring`` package (the OS keyring, or the private
Secret Service ``scripts/with-keyring`` starts). What is resolved is added to
``redaction.OWN`` so a log line can never carry it.
"""

from __future__ import annotations

import keyring
import keyring.errors

from console.errors import SecretError
from console.inventory import KEYRING_REF
from console.redaction import OWN


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


def get(service: str, name: str, *, own: bool = True) -> str | None:
    """The entry's value, or None. ``own=False`` for an agent's entry (a delivery target):
    that value is not keyshift's, so it is not kept for redaction."""
    try:
        value = keyring.get_password(service, name)
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None
    if own:
        OWN.add(value)
    return value


def put(service: str, name: str, value: str, *, own: bool = True) -> None:
    if own:
        OWN.add(value)
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
