"""keyshift's own secrets, by reference (DESIGN.md invariant 3). Four kinds:

- ``keyring:<service>/<name>``: the OS keyring through the ``keyring`` package (a desktop, or
  the private Secret Service ``scripts/with-keyring`` starts);
- ``env:<NAME>``: an environment variable;
- ``file:<path>``: an absolute (or ``~``) path to a regular file of the current user, mode
  0600 or stricter; one trailing newline is dropped;
- ``credential:<NAME>``: a systemd credential, ``$CREDENTIALS_DIRECTORY/<NAME>`` (the unit's
  ``LoadCredential=`` / ``SetCredentialEncrypted=``).

The last three need no D-Bus session, so keyshift runs on a server with no desktop keyring.
``resolve()`` reads any kind; what it reads is added to ``redaction.OWN`` so a log line can
never carry it. Only the keyring is written (``store()``, ``put()``): the environment and
systemd credentials are set by whoever starts keyshift, and a key file is made by
``own_keys.generate()``.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import keyring
import keyring.errors

from console.errors import SecretError
from console.inventory import KEYRING_REF, REF_FORMS, SECRET_REF
from console.redaction import OWN

T = TypeVar("T")

KINDS = ("keyring", "env", "file", "credential")
# What a file or credential may hold: keyshift's own secrets are tokens and keys, never
# documents, and a reference pointed at a large file by mistake should not be read whole.
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``kind`` and where it points (``service``/``name`` for the keyring,
    the variable, the expanded path or the credential's name in ``target``)."""

    text: str
    kind: str
    target: str
    service: str = ""
    name: str = ""


def parse(ref: str) -> Ref:
    """Any kind of reference; a SecretError listing the forms for anything else."""
    match = SECRET_REF.match(ref)
    if not match:
        raise SecretError(f"not a secret reference: {ref!r}", hint=f"use {REF_FORMS}")
    if match["service"] is not None:
        return Ref(ref, "keyring", f"{match['service']}/{match['name']}",
                   match["service"], match["name"])
    if match["env"] is not None:
        return Ref(ref, "env", match["env"])
    if match["file"] is not None:
        return Ref(ref, "file", str(Path(match["file"]).expanduser()))
    return Ref(ref, "credential", match["credential"])


def parse_ref(ref: str) -> tuple[str, str]:
    """A keyring reference's service and name (an agent's keyring entry, or one of keyshift's
    own that is written): any other kind is refused."""
    match = KEYRING_REF.match(ref)
    if not match:
        raise SecretError(f"not a keyring reference: {ref!r}", hint="use keyring:<service>/<name>")
    return match["service"], match["name"]


def _backend_error(exc: Exception) -> SecretError:
    return SecretError(
        f"the OS keyring is unavailable ({type(exc).__name__})",
        hint="run keyshift inside a desktop session or through `make run`, which starts one; "
        "on a server, give references as env:NAME, file:PATH or credential:NAME instead",
    )


# a refusal to open the keyring that comes back sooner than this is no person's answer to
# an unlock prompt: asked again (below)
_PROMPT_SECONDS = 1.0
_TRIES = 3


# one keyring call at a time in this process: six threads writing and reading at once made
# gnome-keyring report its unlocked collection locked within seconds, and within a minute
# its daemon died (a D-Bus-started, locked one took its place); the parallel sync and the
# rotation engine's threads all come through here
# held for one keyring call only, never while waiting for another lock (the keyring source
# once scanned under it and deadlocked against own_keys' first-use file lock)
KEYRING_LOCK = threading.Lock()


def keyring_call(fn: Callable[..., T], *args: str) -> T:
    """``fn(*args)`` on the keyring, one call at a time (``KEYRING_LOCK``), asked again when
    it refuses to open at once.

    gnome-keyring has reported its unlocked collection as locked for a moment (its prompt
    for an unlock then fails at once, there being no display), with the next call fine: a
    test run lost one sync to it. A refusal that took longer is a person who dismissed the
    prompt, and is not asked again."""
    for attempt in range(_TRIES):
        started = time.monotonic()
        try:
            with KEYRING_LOCK:
                return fn(*args)
        except keyring.errors.InitError:
            if attempt == _TRIES - 1 or time.monotonic() - started > _PROMPT_SECONDS:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def get(service: str, name: str, *, own: bool = True) -> str | None:
    """The entry's value, or None. ``own=False`` for an agent's entry (a delivery target):
    that value is not keyshift's, so it is not kept for redaction."""
    try:
        value = keyring_call(keyring.get_password, service, name)
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None
    if own:
        OWN.add(value)
    return value


def put(service: str, name: str, value: str, *, own: bool = True) -> None:
    if own:
        OWN.add(value)
    try:
        keyring_call(keyring.set_password, service, name, value)
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None


def delete(service: str, name: str) -> bool:
    try:
        keyring_call(keyring.delete_password, service, name)
    except keyring.errors.PasswordDeleteError:
        return False
    except keyring.errors.KeyringError as exc:
        raise _backend_error(exc) from None
    return True


def resolve(ref: str) -> str:
    """The value behind a reference of any kind; an error naming the reference (and how to
    fix it) when it cannot be read. The value is kept in ``redaction.OWN``."""
    parsed = parse(ref)
    if parsed.kind == "keyring":
        value = get(parsed.service, parsed.name)
        if value is None:
            raise SecretError(
                f"{ref} is not in the keyring",
                hint=f"store it with: keyshift secret set {parsed.target}",
            )
        return value
    if parsed.kind == "env":
        value = _read_env(parsed)
    elif parsed.kind == "file":
        value = _read_file(parsed)
    else:
        value = _read_credential(parsed)
    OWN.add(value)
    return value


def _read_env(ref: Ref) -> str:
    value = os.environ.get(ref.target)
    if value is None or not value.strip():
        state = "is not set" if value is None else "is empty"
        raise SecretError(
            f"{ref.text}: the environment variable {ref.target} {state}",
            hint=f"set {ref.target} in the environment keyshift runs in (a systemd unit can "
            f"pass it as a credential instead: LoadCredential= and credential:{ref.target})",
        )
    return value


def _read_file(ref: Ref) -> str:
    path = ref.target
    if not os.path.isabs(path):  # "~user" that does not exist stays unexpanded
        raise SecretError(f"{ref.text}: not an absolute path", hint="write file:/full/path")
    try:
        # O_NONBLOCK: a FIFO or device at the path must not hang keyshift before the checks
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _file_error(ref, exc) from None
    try:
        # the checks are on the open file itself, so the path cannot be swapped after them
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(
                f"{ref.text} is not a regular file",
                hint="point the reference at a file holding only the secret",
            )
        if info.st_uid != os.geteuid():
            raise SecretError(
                f"{ref.text} is owned by uid {info.st_uid}, not by the user keyshift runs as "
                f"(uid {os.geteuid()}): someone else could change it",
                hint=f"chown {os.geteuid()} {path}",
            )
        if info.st_mode & 0o077:
            raise SecretError(
                f"{ref.text} has mode {stat.S_IMODE(info.st_mode):04o}: others may read it",
                hint=f"chmod 600 {path}",
            )
        data = _read_limited(fd, ref)
    finally:
        os.close(fd)
    return _text_of(ref, data, f"write the secret into {path}")


def _read_credential(ref: Ref) -> str:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise SecretError(
            f"{ref.text}: $CREDENTIALS_DIRECTORY is not set (keyshift was not started by "
            "systemd with credentials)",
            hint=f"in the unit: LoadCredential={ref.target}:/path/to/secret (or "
            f"SetCredentialEncrypted=); elsewhere use env: or file:",
        )
    path = os.path.join(directory, ref.target)
    # systemd makes the directory and its files private to the unit's user: no mode check
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise SecretError(
                f"{ref.text}: no credential {ref.target!r} in $CREDENTIALS_DIRECTORY",
                hint=f"add LoadCredential={ref.target}:/path/to/secret to the unit",
            ) from None
        raise _file_error(ref, exc) from None
    try:
        data = _read_limited(fd, ref)
    finally:
        os.close(fd)
    return _text_of(ref, data, f"LoadCredential={ref.target}: must name a non-empty file")


def _file_error(ref: Ref, exc: OSError) -> SecretError:
    if exc.errno == errno.ENOENT:
        return SecretError(
            f"{ref.text}: no such file",
            hint=f"create it with mode 0600 (for one of keyshift's own keys: keyshift secret "
            f"keygen {ref.text})",
        )
    if exc.errno == errno.EACCES:
        return SecretError(
            f"{ref.text}: permission denied",
            hint="the file must belong to the user keyshift runs as, mode 0600",
        )
    return SecretError(f"{ref.text}: cannot read it ({exc.strerror})")


def _read_limited(fd: int, ref: Ref) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise SecretError(
                f"{ref.text} is larger than {MAX_FILE_BYTES // 1024} KiB: not a secret",
                hint="point the reference at a file holding only the secret",
            )
    return b"".join(chunks)


def _text_of(ref: Ref, data: bytes, hint: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{ref.text} is not UTF-8 text", hint=hint) from None
    # one trailing newline, as `echo` and editors leave it; other whitespace is the secret's
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise SecretError(f"{ref.text} is empty", hint=hint)
    return text


def not_writable(ref: Ref) -> SecretError:
    """Why keyshift does not write a reference of this kind, and how to set it instead."""
    how = {
        "env": f"set {ref.target} in the environment keyshift runs in",
        "credential": f"add LoadCredential={ref.target}:/path/to/secret to the systemd unit",
        "file": f"write the file yourself, mode 0600 (e.g. install -m 600 /dev/stdin "
        f"{ref.target})",
    }.get(ref.kind, "use keyring:<service>/<name>")
    return SecretError(f"keyshift does not write {ref.kind}: references ({ref.text})", hint=how)


def store(name: str, value: str) -> str:
    """Store a value under ``service/name`` (or ``keyring:service/name``) in the keyring;
    returns the reference. Other kinds are refused: keyshift does not write them."""
    if name.partition(":")[0] in ("env", "file", "credential"):
        raise not_writable(parse(name))
    ref = name if name.startswith("keyring:") else f"keyring:{name}"
    service, key = parse_ref(ref)
    if not value:
        raise SecretError("refusing to store an empty value")
    put(service, key, value)
    return ref
