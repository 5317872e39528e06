"""Where keyshift keeps its files: one place for the data dir, the default store, sandbox state.

``KEYSHIFT_HOME`` overrides the platform's user data dir and config dir (tests and demos use
it): both are then that one directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    base = os.environ.get("KEYSHIFT_HOME")
    path = Path(base) if base else Path(platformdirs.user_data_dir("keyshift", appauthor=False))
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)  # private whatever the umask (invariant 7)
    return path


def config_dir() -> Path:
    """Where a person's settings live (the TUI's keymap.yaml)."""
    base = os.environ.get("KEYSHIFT_HOME")
    return Path(base) if base else Path(platformdirs.user_config_dir("keyshift", appauthor=False))


def default_db() -> Path:
    return data_dir() / "keyshift.db"


def sandbox_dir() -> Path:
    path = data_dir() / "sandbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_file() -> Path:
    return data_dir() / "keyshift.log"
