"""keyshift's own keys: the fingerprint key and the audit chain's key.

Each is found through a reference (DESIGN.md invariant 3) named by an environment variable,
``KEYSHIFT_FINGERPRINT_KEY`` and ``KEYSHIFT_AUDIT_KEY``: any kind ``secret_refs`` reads
(``keyring:``, ``env:``, ``file:``, ``credential:``), so a server with no desktop keyring sets
``file:`` or ``credential:`` references and never touches the keyring. Unset, it is the OS
keyring entry keyshift has always used, created on first use. A key named by a reference is
never created behind the user's back (a mistyped path would silently start a new key, and
every fingerprint or the audit chain with it): ``generate()`` (``keyshift secret keygen``)
makes one. A key is 32 random bytes kept as hex.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from console import secret_refs
from console.errors import SecretError
from console.redaction import OWN

SERVICE = "keyshift"
FINGERPRINT_ENV = "KEYSHIFT_FINGERPRINT_KEY"
FINGERPRINT_DEFAULT = f"keyring:{SERVICE}/installation-fingerprint-key"
AUDIT_ENV = "KEYSHIFT_AUDIT_KEY"
AUDIT_DEFAULT = f"keyring:{SERVICE}/audit-chain-key"
KEY_BYTES = 32
MIN_KEY_BYTES = 16


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
        try:
            parsed = secret_refs.parse(ref)
        except SecretError as exc:
            raise SecretError(f"${env}: {exc.message}", hint=exc.hint) from None
        if ref == default:  # keyshift's own keyring entry: created on first use
            with _first_use_lock():
                stored = secret_refs.get(parsed.service, parsed.name)
                if stored is None:
                    stored = secrets.token_hex(KEY_BYTES)
                    secret_refs.put(parsed.service, parsed.name, stored)
        else:
            stored = secret_refs.resolve(ref)
        loaded = OwnKey(ref, _key_of(stored, f"{ref} (from ${env})"))
        _cache[ref] = loaded
        return loaded


@contextlib.contextmanager
def _first_use_lock() -> Iterator[None]:
    """Two processes starting together on a fresh install must not each make a key (the
    loser's fingerprints and audit entries would not match): one makes it, under a file lock
    in the data dir, and the other reads it."""
    from console import paths

    lock = paths.private_file(paths.data_dir() / "own-keys.lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _key_of(stored: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(stored.strip())
    except ValueError:
        raise SecretError(
            f"{where} does not hold a key: expected hex",
            hint="make one with: keyshift secret keygen REF",
        ) from None
    if len(key) < MIN_KEY_BYTES:
        # a short key (``00``, a typo) would make fingerprints guessable and the chain forgeable
        raise SecretError(
            f"{where} holds a key of {len(key)} bytes; keyshift needs at least {MIN_KEY_BYTES}",
            hint="make one with: keyshift secret keygen REF",
        )
    return key


def generate(ref: str, *, force: bool = False) -> OwnKey:
    """A new random key at ``ref`` (a ``file:`` or ``keyring:`` reference), returned with its
    id. An existing key is kept unless ``force``: replacing the fingerprint key changes every
    fingerprint, and replacing the audit key leaves the chain so far verifiable only with the
    old one."""
    parsed = secret_refs.parse(ref)
    if parsed.kind in ("env", "credential"):
        key_hex = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
        how = (
            f"export {parsed.target}={key_hex}"
            if parsed.kind == "env"
            else f"write a key into a 0600 file and add LoadCredential={parsed.target}:<that "
            "file> to the systemd unit (keyshift secret keygen file:<that file> makes one)"
        )
        raise SecretError(
            f"keyshift cannot write {ref}: {parsed.kind} references are set by whoever starts "
            "keyshift",
            hint=how,
        )
    key = secrets.token_hex(KEY_BYTES)
    if parsed.kind == "keyring":
        if not force and secret_refs.get(parsed.service, parsed.name) is not None:
            raise SecretError(
                f"{ref} already holds a value; keyshift keeps it",
                hint="pass --force to replace it (fingerprints or the audit chain made with "
                "the old key will no longer match)",
            )
        secret_refs.put(parsed.service, parsed.name, key)
    else:
        _write_key_file(parsed, key + "\n", force)
        OWN.add(key)
    made = OwnKey(ref, bytes.fromhex(key))
    with _lock:
        _cache.pop(ref, None)
    return made


def _write_key_file(ref: secret_refs.Ref, text: str, force: bool) -> None:
    path = Path(ref.target)
    if not path.is_absolute():
        raise SecretError(f"{ref.text}: not an absolute path", hint="write file:/full/path")
    if path.exists() and not force:
        raise SecretError(
            f"{ref.text} already exists; keyshift does not overwrite it",
            hint="pass --force to replace it (fingerprints or the audit chain made with the "
            "old key will no longer match)",
        )
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, mode=0o700)
        # created private (O_EXCL: never through someone's link), then moved over the old one
        # whole, so a reader sees the old key or the new, never half of one
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if force:
                os.replace(tmp, path)
            else:
                # link() refuses an existing name: two keygens at once cannot both win
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except FileExistsError:
        raise SecretError(
            f"{ref.text} already exists; keyshift does not overwrite it",
            hint="pass --force to replace it",
        ) from None
    except OSError as exc:
        raise SecretError(f"cannot write {ref.text}: {exc.strerror}") from None


def fingerprint_key() -> OwnKey:
    return _load(FINGERPRINT_ENV, FINGERPRINT_DEFAULT)


def audit_key() -> OwnKey:
    return _load(AUDIT_ENV, AUDIT_DEFAULT)


def _reset_for_tests() -> None:
    with _lock:
        _cache.clear()
