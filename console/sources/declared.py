"""Declared provider credentials: the keys no API can list (an LLM provider key, a payment key,
a code-host token, a chat bot token), as the inventory declares them.

The value itself is read from its delivery targets (an agent's env file, a keyring entry) only to
fingerprint it, so reuse across environments shows without revealing the value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import dotenv_values

from console import secret_refs
from console.config import target_place
from console.errors import SecretError
from console.fingerprint import fingerprint as fingerprint_of
from console.inventory import (
    DeclaredCredential,
    EnvFileTarget,
    KeyringTarget,
    WorkspaceIdentity,
    issuer_parts,
    target_fields,
)
from console.model import Credential, Grant, ItemError, UsageEvent, credential_id
from console.sources.base import CollectResult, Progress

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.inventory import DeclaredSource as DeclaredSourceConfig


# the kind of the row listed for a declared rotation, by its issuer (aws-iam keys have rows)
ROTATION_ROW_KINDS = {
    "vault-approle": "approle-secret-id",
    "vault-token": "vault-token",
    "generated": "generated-secret",
    "provider": "api-key",
}


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
                    rotator=decl.rotator,
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
            self._workspace_grants(cred_id, decl.delivered_to, set(decl.agents), result)
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
        if self._lists_rotations():
            self._rotation_rows(result, progress)
        return result

    def _lists_rotations(self) -> bool:
        """The first declared source lists the declared rotations that no other source can:
        those delivered only to env files and keyring entries."""
        first = next(iter(self._loaded.sources_of_type("declared")), None)
        return first is not None and first.name == self.name

    def _rotation_rows(self, result: CollectResult, progress: Progress | None) -> None:
        inventory = self._loaded.inventory
        for rot in inventory.rotations:
            kind = ROTATION_ROW_KINDS.get(rot.issuer.type)
            if kind is None or any(t.type in ("vault-kv", "secretsmanager", "ssm")
                                   for t in rot.targets):
                continue  # its targets are listed by their own sources
            cred_id = credential_id(self.name, kind, rot.name)
            value, where = None, None
            for target in rot.targets:
                fields = target_fields(target, issuer_parts(rot.issuer))
                first = next(iter(fields.values()), None)
                if first is None:
                    continue
                value = self._target_value(target, first, result, rot.name)
                if value:
                    where = f"{target.path}:{first}" if target.type == "env-file" else first
                    break
            policy = inventory.policies.by_sensitivity.get(rot.sensitivity)
            label = (
                f"provider:{rot.issuer.provider}"  # type: ignore[union-attr]
                if rot.issuer.type == "provider"
                else rot.issuer.type
            )
            result.credentials.append(
                Credential(
                    id=cred_id,
                    source=self.name,
                    kind=kind,
                    native_id=rot.name,
                    name=rot.name,
                    location=where or ", ".join(target_place(t) for t in rot.targets),
                    owner=rot.owner,
                    environment=rot.environment,
                    scope=rot.scope or None,
                    sensitivity=rot.sensitivity,
                    max_age_days=policy.max_age_days if policy else None,
                    fingerprint=fingerprint_of(value) if value else None,
                    tags={"rotation": rot.name, "issuer": label},
                )
            )
            for agent in rot.agents:
                result.grants.append(
                    Grant(
                        agent=agent,
                        credential_id=cred_id,
                        capabilities=["use"],
                        chain=[f"agent:{agent}", "declared in inventory", f"rotation:{rot.name}"],
                    )
                )
            self._workspace_grants(cred_id, rot.targets, set(rot.agents), result)
            if progress:
                progress(rot.name)

    def _workspaces(self) -> list[tuple[str, str, Path, set[Path]]]:
        """(agent, workspace as written, its directory, its env files) for every workspace
        identity, resolved against the inventory's directory."""
        base = Path(self._loaded.base_dir)
        out = []
        for agent in self._loaded.inventory.agents:
            for ident in agent.identities:
                if isinstance(ident, WorkspaceIdentity):
                    root = (base / ident.path).resolve()
                    files = {(root / f).resolve() for f in ident.env_files}
                    out.append((agent.name, ident.path, root, files))
        return out

    def _workspace_grants(
        self, cred_id: str, targets: list[Any], declared: set[str], result: CollectResult
    ) -> None:
        """An agent whose workspace holds a file the value is delivered to can read it, named
        in the inventory's ``agents`` or not: that is reach too. Not marked used: a declared
        last use does not say which agent it was."""
        holders = self._workspaces()
        if not holders:
            return
        seen = set(declared)
        for target in targets:
            if not isinstance(target, EnvFileTarget):
                continue
            path = Path(self._loaded.base_dir, target.path).resolve()
            for agent, written, root, files in holders:
                if agent in seen or not (path in files or path.is_relative_to(root)):
                    continue
                seen.add(agent)
                result.grants.append(
                    Grant(
                        agent=agent,
                        credential_id=cred_id,
                        capabilities=["read"],
                        chain=[f"agent:{agent}", f"workspace:{written}", f"file:{target.path}"],
                    )
                )

    def _target_value(
        self, target: Any, field: str, result: CollectResult, name: str
    ) -> str | None:
        if isinstance(target, EnvFileTarget):
            path = Path(self._loaded.base_dir, target.path)
            return (dotenv_values(path).get(field) or None) if path.is_file() else None
        if isinstance(target, KeyringTarget):
            try:
                service, key = secret_refs.parse_ref(field)
                return secret_refs.get(service, key, own=False)
            except SecretError as exc:
                result.errors.append(ItemError(where=name, message=exc.message))
        return None

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
