"""The OS keyring (freedesktop Secret Service): the entries stored under each agent's keyring
service. Entries written by python-keyring carry the attributes ``service`` and ``username``,
which is what is searched. Values are read only to fingerprint them.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console.errors import SourceError
from console.fingerprint import fingerprint as fingerprint_of
from console.inventory import KeyringIdentity
from console.model import Credential, Grant, ItemError, credential_id
from console.sources.base import CollectResult, Progress

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.inventory import KeyringSource as KeyringSourceConfig

KIND = "keyring"
_HINT = (
    "keyshift needs a running Secret Service (gnome-keyring, KeePassXC); "
    "run inside a desktop session or through `make run`, which starts one"
)


def _when(timestamp: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(timestamp), tz=UTC) if timestamp else None
    except (TypeError, ValueError, OSError):
        return None


class KeyringSource:
    type = "keyring"

    def __init__(self, cfg: KeyringSourceConfig, loaded: LoadedInventory) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._loaded = loaded

    def _services(self) -> dict[str, list[Any]]:
        """keyring service -> the agents that use it on this source."""
        out: dict[str, list[Any]] = {}
        for agent in self._loaded.inventory.agents:
            for ident in agent.identities:
                if isinstance(ident, KeyringIdentity) and ident.source == self.name:
                    out.setdefault(ident.service, []).append(agent)
        return out

    def collect(self, progress: Progress | None = None) -> CollectResult:
        try:
            import secretstorage
            import secretstorage.exceptions
        except ImportError:
            raise SourceError(
                f"{self.name}: the secretstorage package is not installed", hint=_HINT
            ) from None
        result = CollectResult()
        services = self._services()
        if not services:
            return result
        try:
            connection = secretstorage.dbus_init()
        except (secretstorage.exceptions.SecretServiceNotAvailableException, OSError) as exc:
            raise SourceError(
                f"{self.name}: no Secret Service on the session bus ({type(exc).__name__})",
                hint=_HINT,
            ) from None
        with closing(connection):
            try:
                collection = secretstorage.get_default_collection(connection)
                if collection.is_locked():
                    collection.unlock()
                if collection.is_locked():
                    raise SourceError(f"{self.name}: the keyring is locked", hint=_HINT)
            except secretstorage.exceptions.SecretStorageException as exc:
                raise SourceError(
                    f"{self.name}: cannot open the default keyring ({type(exc).__name__})",
                    hint=_HINT,
                ) from None
            for service, agents in sorted(services.items()):
                try:
                    items = list(collection.search_items({"service": service}))
                except secretstorage.exceptions.SecretStorageException as exc:
                    result.errors.append(
                        ItemError(where=f"keyring {service}", message=type(exc).__name__)
                    )
                    continue
                for item in items:
                    self._item(item, service, agents, result, progress)
        if result.errors:
            result.complete = False
        return result

    def _item(
        self,
        item: Any,
        service: str,
        agents: list[Any],
        result: CollectResult,
        progress: Progress | None,
    ) -> None:
        import secretstorage.exceptions

        attributes = item.get_attributes()
        username = attributes.get("username") or item.get_label()
        native = f"{service}/{username}"
        fingerprint = None
        try:
            raw = item.get_secret()
        except secretstorage.exceptions.SecretStorageException as exc:
            result.errors.append(ItemError(where=f"keyring {native}", message=type(exc).__name__))
            raw = None
        if raw:
            try:
                value: str | bytes = raw.decode()
            except UnicodeDecodeError:
                value = raw
            fingerprint = fingerprint_of(value)
        owners = {a.owner for a in agents if a.owner}
        environments = {str(a.environment) for a in agents}
        modified = _when(item.get_modified())
        cred = Credential(
            id=credential_id(self.name, KIND, native),
            source=self.name,
            kind=KIND,
            native_id=native,
            name=native,
            location=f"keyring:{native}",
            owner=owners.pop() if len(owners) == 1 else None,
            environment=environments.pop() if len(environments) == 1 else None,
            created_at=_when(item.get_created()),
            rotated_at=modified,
            fingerprint=fingerprint,
            tags={"label": item.get_label()} if item.get_label() else {},
        )
        result.credentials.append(cred)
        for agent in agents:
            result.grants.append(
                Grant(
                    agent=agent.name,
                    credential_id=cred.id,
                    capabilities=["read"],
                    chain=[f"agent:{agent.name}", f"keyring:{service}", f"entry:{username}"],
                )
            )
        if progress:
            progress(native)
