"""The only place that knows which rotators exist.

Built-ins (``vault-kv``, ``manual``) plus every entry point in the group ``keyshift.rotators``:
a third party ships a distribution whose entry point names a class implementing
``rotators.base.Rotator`` and keyshift finds it without a code change. A broken third-party
entry point (import error, not a rotator) is skipped and remembered in ``load_errors()`` so one
bad plugin never takes rotation down for everything else.

Rotator classes are constructed with the engine's ``RotatorContext``: ``cls(context)``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from typing import Any

from rotators.base import Rotator, RotatorContext

GROUP = "keyshift.rotators"

# name -> "module:Class", imported on first use so `keyshift ls` never pays for hvac.
BUILTINS: dict[str, str] = {
    "vault-kv": "rotators.vault_kv:VaultKvRotator",
    "manual": "rotators.manual:ManualRotator",
}

_REQUIRED_METHODS = ("plan", "create", "verify", "promote", "revoke", "rollback")


class UnknownRotator(LookupError):
    """No rotator by that name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown rotator {name!r}; known rotators: {', '.join(known) or 'none'}")
        self.name = name
        self.known = known


_lock = threading.RLock()
_classes: dict[str, type] | None = None
_errors: dict[str, str] = {}
_registered: dict[str, type] = {}  # added in-process through register()


def _problem(cls: Any) -> str | None:
    """Why ``cls`` is not a usable rotator class, or None."""
    if not isinstance(cls, type):
        return f"{cls!r} is not a class"
    for attr in ("name", "kinds", "manual"):
        if not hasattr(cls, attr):
            return f"{cls.__name__} has no class attribute {attr!r}"
    missing = [m for m in _REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        return f"{cls.__name__} lacks {', '.join(missing)}"
    return None


def _import(target: str) -> type:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def _scan() -> tuple[dict[str, type], dict[str, str]]:
    classes: dict[str, type] = {}
    errors: dict[str, str] = {}
    for name, target in BUILTINS.items():
        classes[name] = _import(target)  # a broken built-in is keyshift's bug: let it raise
    for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in classes:
            errors[ep.name] = f"entry point {ep.value} ignored: {ep.name!r} is a built-in rotator"
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # any fault in third-party code: skip it, keep the rest
            errors[ep.name] = f"entry point {ep.value} failed to load: {type(exc).__name__}: {exc}"
            continue
        problem = _problem(cls)
        if problem:
            errors[ep.name] = f"entry point {ep.value}: {problem}"
            continue
        classes[ep.name] = cls
    return classes, errors


def _all() -> dict[str, type]:
    global _classes, _errors
    with _lock:
        if _classes is None:
            _classes, _errors = _scan()
        merged = dict(_classes)
        for name, cls in _registered.items():
            merged.setdefault(name, cls)
        return merged


def reload() -> None:
    """Scan the entry points again (after installing a plugin in a running process)."""
    global _classes
    with _lock:
        importlib.invalidate_caches()
        _classes = None
    _all()


def register(cls: type, *, name: str | None = None) -> str:
    """Add a rotator class in-process (tests, embedding). Returns the name it is known by.

    A name already taken by a built-in or an entry point is refused: replacing a rotator
    silently would change what a running rotation does.
    """
    problem = _problem(cls)
    if problem:
        raise TypeError(problem)
    key = name or cls.name  # type: ignore[attr-defined]
    with _lock:
        if key in _all():
            raise ValueError(f"a rotator named {key!r} is already registered")
        _registered[key] = cls
    return key


def unregister(name: str) -> None:
    """Remove a rotator added with register() (built-ins and entry points stay)."""
    with _lock:
        _registered.pop(name, None)


def names() -> list[str]:
    """Built-ins first (in their fixed order), then third-party rotators by name."""
    found = _all()
    builtins = [n for n in BUILTINS if n in found]
    return builtins + sorted(n for n in found if n not in BUILTINS)


def get(name: str) -> type:
    found = _all()
    try:
        return found[name]
    except KeyError:
        raise UnknownRotator(name, names()) from None


def create(name: str, context: RotatorContext) -> Rotator:
    return get(name)(context)


def for_kind(kind: str) -> list[str]:
    """Rotators that can rotate credentials of ``kind``, in ``names()`` order."""
    found = _all()
    return [n for n in names() if kind in tuple(getattr(found[n], "kinds", ()))]


def load_errors() -> dict[str, str]:
    """Entry points that were skipped, by name, with why."""
    _all()
    with _lock:
        return dict(_errors)
