"""Declared provider credentials: the keys no API can list (an LLM provider key, a payment key,
a code-host token, a chat bot token), as the inventory declares them.

The value itself is read from its delivery targets (an agent's env file, a keyring entry) only to
fingerprint it, so reuse across environments shows without revealing the value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import dotenv_values

from console import secret_refs
from console.errors import SecretError
from console.fingerprint import fingerprint as fingerprint_of
from console.inventory import DeclaredCredential, EnvFileTarget, KeyringTarget
from console.model import Credential, Grant, ItemError, UsageEvent, credential_id
from console.sources.base import CollectResult, Progress

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.inventory import DeclaredSource as DeclaredSourceConfig


def _at(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None


class DeclaredSource:
    type = "declared"

    def __init__(self, cfg: DeclaredSourceConfig, loaded: LoadedInventory) -> None:
        self.name = cfg.name
        self._loaded = loaded

    def collect(self, progress: Progress | None = None) -> CollectResult:
        result = CollectResult()
        inventory = self._loaded.inventory
        for decl in inventory.credentials:
            if decl.source != self.name:
                continue
            cred_id = credential_id(self.name, decl.kind, decl.name)
            value, where = self._read_value(decl, result)
            policy = inventory.policies.by_sensitivity.get(decl.sensitivity)
            result.credentials.append(
                Credential(
                    id=cred_id,
                    source=self.name,
                    kind=decl.kind,
                    native_id=decl.name,
                    name=decl.name,
                    location=where or f"{decl.provider} (declared)",
                    owner=decl.owner,
                    environment=decl.environment,
                    scope=decl.scope or None,
                    sensitivity=decl.sensitivity,
                    created_at=_at(decl.created),
                    rotated_at=_at(decl.rotated or decl.created),
                    expires_at=_at(decl.expires),
                    last_used_at=_at(decl.last_used),
                    last_used_evidence="declared" if decl.last_used else None,
                    rotator=decl.rotator or "manual",
                    max_age_days=policy.max_age_days if policy else None,
                    fingerprint=fingerprint_of(value) if value else None,
                    tags={"provider": decl.provider, **decl.tags},
                )
            )
            for agent in decl.agents:
                result.grants.append(
                    Grant(
                        agent=agent,
                        credential_id=cred_id,
                        capabilities=["use"],
                        chain=[
                            f"agent:{agent}",
                            "declared in inventory",
                            f"credential:{decl.name}",
                        ],
                        used=decl.last_used is not None,
                    )
                )
            if decl.last_used:
                result.usage.append(
                    UsageEvent(
                        credential_id=cred_id,
                        at=_at(decl.last_used),  # type: ignore[arg-type]
                        operation="use",
                        evidence="declared",
                    )
                )
            if progress:
                progress(decl.name)
        return result

    def _read_value(
        self, decl: DeclaredCredential, result: CollectResult
    ) -> tuple[str | None, str | None]:
        """The value at the first delivery target that has one, and a description of where."""
        for target in decl.delivered_to:
            if isinstance(target, EnvFileTarget):
                path = Path(self._loaded.base_dir, target.path)
                if not path.is_file():
                    continue
                value = dotenv_values(path).get(target.var)
                if value:
                    return value, f"{target.path}:{target.var}"
            elif isinstance(target, KeyringTarget):
                try:
                    service, name = secret_refs.parse_ref(target.ref)
                    value = secret_refs.get(service, name, own=False)
                except SecretError as exc:
                    result.errors.append(ItemError(where=decl.name, message=exc.message))
                    continue
                if value:
                    return value, target.ref
        return None, None
