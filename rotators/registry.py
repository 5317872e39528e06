"""The only place that knows which rotators exist: issuers, delivery targets, and whole
rotators written against keyshift's first protocol.

Built-ins (below) plus every entry point in the group ``keyshift.rotators``: a third party
ships a distribution whose entry point names a class, and keyshift finds it without a code
change. The class's ``role`` says what it is: ``"issuer"`` (rotators.base.Issuer), ``"target"``
(rotators.base.Target), or none for a whole ``Rotator``. A broken third-party entry point
(import error, missing methods) is skipped and remembered in ``load_errors()`` so one bad
plugin never takes rotation down for everything else.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from typing import Any

GROUP = "keyshift.rotators"

# name -> "module:Class", imported on first use so `keyshift ls` never pays for hvac.
BUILTINS: dict[str, str] = {
    # issuers
    "generated": "rotators.issuers.generated:GeneratedIssuer",
    "provider": "rotators.issuers.provider:ProviderIssuer",
    "vault-approle": "rotators.issuers.vault_approle:VaultAppRoleIssuer",
    "vault-token": "rotators.issuers.vault_token:VaultTokenIssuer",
    "aws-iam": "rotators.issuers.aws_iam:AwsIamIssuer",
    # delivery targets
    "vault-kv": "rotators.targets.vault_kv:VaultKvTarget",
    "secretsmanager": "rotators.targets.secretsmanager:SecretsManagerTarget",
    "ssm": "rotators.targets.ssm:SsmTarget",
    "keyring": "rotators.targets.keyring_entry:KeyringTarget",
    "env-file": "rotators.targets.env_file:EnvFileTarget",
}

ROLES = ("issuer", "target", "rotator")
_REQUIRED = {
    "issuer": (
        ("name", "manual"),
        ("plan", "revoke_stages", "identify", "issue", "verify", "discard", "revoke",
         "still_valid"),
    ),
    "target": (
        ("name", "stages"),
        ("where", "plan", "read", "deliver", "read_delivered", "find_delivered",
         "read_previous", "promote", "retire", "rollback"),
    ),
    "rotator": (
        ("name", "kinds", "manual"),
        ("plan", "create", "verify", "promote", "revoke", "rollback"),
    ),
}


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


def role_of(cls: Any) -> str:
    """"issuer", "target", or "rotator" (keyshift's first, whole-rotation protocol)."""
    role = getattr(cls, "role", None)
    return role if role in ("issuer", "target") else "rotator"


def _problem(cls: Any) -> str | None:
    """Why ``cls`` is not a usable issuer, target or rotator class, or None."""
    if not isinstance(cls, type):
        return f"{cls!r} is not a class"
    attrs, methods = _REQUIRED[role_of(cls)]
    for attr in attrs:
        if not hasattr(cls, attr):
            return f"{cls.__name__} has no class attribute {attr!r}"
    missing = [m for m in methods if not callable(getattr(cls, m, None))]
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


def names(role: str | None = None) -> list[str]:
    """Built-ins first (in their fixed order), then third-party ones by name; only those of
    ``role`` when given."""
    found = _all()
    builtins = [n for n in BUILTINS if n in found]
    ordered = builtins + sorted(n for n in found if n not in BUILTINS)
    return [n for n in ordered if role is None or role_of(found[n]) == role]


def get(name: str) -> type:
    found = _all()
    try:
        return found[name]
    except KeyError:
        raise UnknownRotator(name, names()) from None


def of_role(name: str, role: str) -> type:
    """The class named ``name``, which must be of ``role``; UnknownRotator otherwise."""
    cls = get(name)
    if role_of(cls) != role:
        raise UnknownRotator(name, names(role))
    return cls


def for_kind(kind: str) -> list[str]:
    """Whole rotators that say they rotate credentials of ``kind``, in ``names()`` order."""
    found = _all()
    return [n for n in names("rotator") if kind in tuple(getattr(found[n], "kinds", ()))]


def load_errors() -> dict[str, str]:
    """Entry points that were skipped, by name, with why."""
    _all()
    with _lock:
        return dict(_errors)
