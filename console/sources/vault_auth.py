"""Vault / OpenBao auth credentials: tokens (through their accessors) and AppRole secret-ids.

Neither a token nor a secret-id is ever read: the server lists their *accessors*, and a lookup
by accessor gives what keyshift keeps (policies, TTL, expiry, creation, role, orphan, uses
left, metadata). The accessor is the native id. An agent whose AppRole role issued a secret-id
or a token can use it; the grant says so.

Listing tokens needs ``sudo`` on ``auth/token/accessors``; a token without it gets a 403 that
is reported while the rest is synced.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from console.model import Credential, Grant, ItemError, credential_id
from console.sources.base import CollectResult
from console.sources.vault_audit import parse_vault_time

if TYPE_CHECKING:
    from console.sources.vault import VaultClient

# AppRole role -> the agents that log in with it: (agent, owner, environment)
Holders = dict[str, list[tuple[str, str | None, str | None]]]
TOKEN_KIND = "vault-token"
SECRET_ID_KIND = "approle-secret-id"


def _seconds(value: Any) -> int | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def _why(status: int) -> str:
    return "permission denied" if status == 403 else f"HTTP {status}"


class AuthLister:
    """Tokens and secret-ids of one Vault source, with who holds them."""

    def __init__(
        self,
        source: str,
        client: VaultClient,
        pool: ThreadPoolExecutor,
        approle_mount: str,
        holders: Holders,
        environment: str | None,
        token_role_holders: Holders | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.pool = pool
        self.mount = approle_mount.strip("/")
        # AppRole role -> [(agent, owner, environment)] from the inventory's identities
        self.holders = holders
        # token role -> the same, for tokens made by auth/token/create/<role>
        self.token_role_holders = token_role_holders or {}
        self.environment = environment

    def collect(self, result: CollectResult) -> None:
        """The lists first, side by side (keyshift's own token, the token accessors, the
        roles, then every role's secret-ids at once), then every lookup, tokens and secret-ids
        alike, in one pass over the pool: no pool waits for a slow role's last lookup before
        the next one starts. Rows and errors come out in a fixed order (tokens, then each
        role's secret-ids), whatever order the server answers in."""
        own = self.pool.submit(self._own_accessor)
        tokens = self.pool.submit(self._list, "auth/token/accessors")
        roles = self.pool.submit(self._list, f"auth/{self.mount}/role")
        lookups: list[tuple[str | None, str]] = []  # (role, accessor); no role: a token
        status, accessors = tokens.result()
        if status == 200:
            lookups += [(None, accessor) for accessor in accessors]
        else:
            result.errors.append(
                ItemError(
                    where="auth/token/accessors",
                    message=f"tokens not listed ({_why(status)}; listing them needs sudo)",
                )
            )
        lookups += self._secret_id_accessors(result, *roles.result())
        own_accessor = own.result()
        for (role, accessor), code, found in self.pool.map(self._lookup, lookups):
            if code != 200:
                if code not in (400, 404):  # revoked since it was listed: simply gone
                    where = (
                        f"token {accessor[:8]}" if role is None
                        else f"auth/{self.mount}/role/{role} secret-id {accessor[:8]}"
                    )
                    result.errors.append(ItemError(where=where, message=f"lookup {_why(code)}"))
                continue
            data = found.get("data") or {}
            if role is None:
                self._token(result, accessor, data, own_accessor)
            else:
                self._secret_id(result, role, accessor, data)

    def _list(self, path: str) -> tuple[int, list[str]]:
        status, body = self.client.json("LIST", path)
        return status, [str(k) for k in (body.get("data") or {}).get("keys") or []]

    def _lookup(
        self, item: tuple[str | None, str]
    ) -> tuple[tuple[str | None, str], int, dict[str, Any]]:
        role, accessor = item
        if role is None:
            code, found = self.client.json(
                "POST", "auth/token/lookup-accessor", json={"accessor": accessor}
            )
        else:
            code, found = self.client.json(
                "POST",
                f"auth/{self.mount}/role/{role}/secret-id-accessor/lookup",
                json={"secret_id_accessor": accessor},
            )
        return item, code, found

    # -- tokens ----------------------------------------------------------------------------

    def _own_accessor(self) -> str | None:
        status, body = self.client.json("GET", "auth/token/lookup-self")
        return (body.get("data") or {}).get("accessor") if status == 200 else None

    def _token(
        self, result: CollectResult, accessor: str, data: dict[str, Any], own: str | None
    ) -> None:
        meta = data.get("meta") or {}
        role = meta.get("role_name") or data.get("role") or None
        display = data.get("display_name") or "token"
        path = str(data.get("path", ""))
        by_token_role = path.startswith("auth/token/create/")
        if role and by_token_role:
            holders = self.token_role_holders.get(role, [])
        elif role and path.startswith(f"auth/{self.mount}/"):
            holders = self.holders.get(role, [])
        else:
            holders = []
        tags = {"path": str(data.get("path") or ""), "orphan": str(bool(data.get("orphan")))}
        if role:
            tags["role"] = str(role)
        if data.get("num_uses"):
            tags["uses_left"] = str(data["num_uses"])
        if data.get("entity_id"):
            tags["entity_id"] = str(data["entity_id"])
        if accessor == own:
            tags["keyshift"] = "the token keyshift reads this source with"
        policies = sorted(set(data.get("policies") or []))
        issued = parse_vault_time(data.get("issue_time")) or _from_unix(data.get("creation_time"))
        self._record(
            result,
            TOKEN_KIND,
            accessor,
            holders,
            name=f"token/{display}/{accessor[:8]}",
            location=f"auth/token/accessors/{accessor}",
            scope="policies: " + (", ".join(policies) or "(none)"),
            created=issued,
            expires=parse_vault_time(data.get("expire_time")),
            ttl=_seconds(data.get("creation_ttl")) or _seconds(data.get("ttl")),
            tags=tags,
            grant=("use", [f"{'token-role' if by_token_role else 'approle'}:{role}",
                           f"token:{accessor[:8]}"]),
        )

    def _record(
        self,
        result: CollectResult,
        kind: str,
        native: str,
        holders: list[tuple[str, str | None, str | None]],
        *,
        name: str,
        location: str,
        scope: str,
        created: datetime | None,
        expires: datetime | None,
        ttl: int | None,
        tags: dict[str, str],
        grant: tuple[str, list[str]],
    ) -> None:
        """One credential row, and a grant to each agent that holds it. Owner and
        environment come from the holding agent when exactly one holds it."""
        cid = credential_id(self.source, kind, native)
        one = holders[0] if len(holders) == 1 else None
        result.credentials.append(
            Credential(
                id=cid,
                source=self.source,
                kind=kind,
                native_id=native,
                name=name,
                location=location,
                owner=one[1] if one else None,
                environment=(one[2] if one else None) or self.environment,
                scope=scope,
                created_at=created,
                rotated_at=created,
                expires_at=expires,
                ttl_seconds=ttl,
                tags=tags,
            )
        )
        capability, links = grant
        for agent, _owner, _env in holders:
            result.grants.append(
                Grant(
                    agent=agent,
                    credential_id=cid,
                    capabilities=[capability],
                    chain=[f"agent:{agent}", *links],
                )
            )

    # -- AppRole secret-ids ----------------------------------------------------------------

    def _secret_id_accessors(
        self, result: CollectResult, status: int, roles: list[str]
    ) -> list[tuple[str | None, str]]:
        """(role, accessor) of every secret-id of every role (the roles' lists on the pool)."""
        if status == 404:
            return []  # no AppRole mount here, or no roles: nothing to list
        if status != 200:
            result.errors.append(
                ItemError(
                    where=f"auth/{self.mount}/role", message=f"roles not listed ({_why(status)})"
                )
            )
            return []
        paths = [f"auth/{self.mount}/role/{role}/secret-id" for role in roles]
        out: list[tuple[str | None, str]] = []
        for role, path, (code, accessors) in zip(
            roles, paths, self.pool.map(self._list, paths), strict=True
        ):
            if code == 200:
                out += [(role, accessor) for accessor in accessors]
            elif code != 404:  # 404: a role with no secret-id
                result.errors.append(
                    ItemError(where=path, message=f"secret-ids not listed ({_why(code)})")
                )
        return out

    def _secret_id(
        self, result: CollectResult, role: str, accessor: str, data: dict[str, Any]
    ) -> None:
        base = f"auth/{self.mount}/role/{role}"
        tags = {"role": role}
        uses = data.get("secret_id_num_uses")
        if uses:
            tags["uses_left"] = str(uses)
        for key, value in (data.get("metadata") or {}).items():
            tags[f"meta.{key}"] = str(value)
        created = parse_vault_time(data.get("creation_time"))
        ttl = _seconds(data.get("secret_id_ttl"))
        expires = parse_vault_time(data.get("expiration_time")) or (
            created + timedelta(seconds=ttl) if created and ttl else None
        )
        self._record(
            result,
            SECRET_ID_KIND,
            f"{self.mount}/{role}/{accessor}",
            self.holders.get(role, []),
            name=f"approle/{role}/{accessor[:8]}",
            location=f"{base}/secret-id-accessor/{accessor}",
            scope=f"AppRole login as {role}",
            created=created,
            expires=expires,
            ttl=ttl,
            tags=tags,
            grant=("login", [f"approle:{role}", f"secret-id:{accessor[:8]}"]),
        )


def _from_unix(value: Any) -> datetime | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None

