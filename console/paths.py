"""Where keyshift keeps its files: one place for the data dir, the default store, sandbox state.

``KEYSHIFT_HOME`` overrides the platform's user data dir and config dir (tests and demos use
it): both are then that one directory.

What keyshift writes is private whatever the umask (DESIGN.md invariant 7): its directories
0700 and its files 0600, from the moment they exist (created with that mode, not chmod-ed
after a window in which another user could open them).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def private_dir(path: Path) -> Path:
    """``path`` as a directory: when keyshift creates it, 0700 (parents as the umask says:
    they may be shared, like ``~/.local/share``). An existing directory is left as it is:
    ``KEYSHIFT_HOME`` may name one the user chose, and its mode is theirs."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdir's mode is cut by the umask too (0277 would leave 0500)
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty 0600 when absent (so a later ``open`` that would use the
    umask's mode finds it already private), and tightened when keyshift owns it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid() and info.st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` 0600, replacing it whole (a reader never sees half, and a
    link planted at the temporary name is never followed): reports and exports."""
    from console.errors import UsageError

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def data_dir() -> Path:
    base = os.environ.get("KEYSHIFT_HOME")
    path = Path(base) if base else Path(platformdirs.user_data_dir("keyshift", appauthor=False))
    return private_dir(path)


def config_dir() -> Path:
    """Where a person's settings live (the TUI's keymap.yaml). keyshift only reads it, so it
    is never created here: its mode is the person's."""
    base = os.environ.get("KEYSHIFT_HOME")
    return Path(base) if base else Path(platformdirs.user_config_dir("keyshift", appauthor=False))


def default_db() -> Path:
    return data_dir() / "keyshift.db"


def sandbox_dir() -> Path:
    return private_dir(data_dir() / "sandbox")


def log_file() -> Path:
    return data_dir() / "keyshift.log"
