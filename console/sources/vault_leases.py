"""Vault / OpenBao leases: what secrets engines issued with a lifetime (a PKI certificate,
database or cloud credentials), found through ``sys/leases/lookup``.

A lease's value was handed to whoever asked for it and is never readable again, so a lease row
has no fingerprint. Nor does the server record who asked: a lease's holder is unknown, and the
row says so (tag ``holder: unknown``) rather than showing it as reachable by nobody. Token
leases (``auth/``) are skipped: tokens are listed through their accessors (vault_auth.py),
with more detail.

Listing leases needs ``sudo`` on ``sys/leases/lookup``; a 403 is reported and the rest synced.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from console.model import Credential, ItemError, credential_id
from console.sources.base import CollectResult
from console.sources.vault_audit import parse_vault_time
from console.sources.vault_auth import _seconds, _why

if TYPE_CHECKING:
    from console.sources.vault import VaultClient

LEASE_KIND = "vault-lease"
_LOOKUP = "sys/leases/lookup"


class LeaseLister:
    """Every lease of one Vault source but token leases, with its TTL and expiry."""

    def __init__(
        self, source: str, client: VaultClient, pool: ThreadPoolExecutor, environment: str | None
    ) -> None:
        self.source = source
        self.client = client
        self.pool = pool
        self.environment = environment

    def collect(self, result: CollectResult) -> None:
        ids = self._lease_ids(result)

        def lookup(lease_id: str) -> tuple[str, int, dict[str, Any]]:
            status, body = self.client.json("PUT", _LOOKUP, json={"lease_id": lease_id})
            return lease_id, status, body

        for lease_id, status, body in self.pool.map(lookup, ids):
            if status == 200:
                result.credentials.append(self._credential(lease_id, body.get("data") or {}))
            elif status in (400, 404):
                continue  # expired or revoked between the list and the lookup
            else:
                result.errors.append(
                    ItemError(where=f"lease {lease_id}", message=f"lookup: {_why(status)}")
                )

    def _lease_ids(self, result: CollectResult) -> list[str]:
        """Walk ``sys/leases/lookup/<prefix>`` folder by folder, in parallel."""
        status, body = self.client.json("LIST", f"{_LOOKUP}/")
        if status == 404:
            return []  # no leases at all
        if status != 200:
            result.errors.append(
                ItemError(where=_LOOKUP, message=f"cannot list leases ({_why(status)})")
            )
            return []
        ids: list[str] = []
        pending: dict[Future, str] = {}

        def handle(prefix: str, keys: list[str]) -> None:
            for key in keys:
                full = prefix + key
                if full == "auth/":
                    continue  # token leases: listed as tokens
                if key.endswith("/"):
                    pending[self.pool.submit(self._list, full)] = full
                else:
                    ids.append(full)

        handle("", list((body.get("data") or {}).get("keys") or []))
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                prefix = pending.pop(fut)
                status, keys = fut.result()
                if status == 200:
                    handle(prefix, keys)
                elif status != 404:  # 404: its leases ended since the parent was listed
                    result.errors.append(
                        ItemError(
                            where=f"{_LOOKUP}/{prefix}",
                            message=f"cannot list leases ({_why(status)})",
                        )
                    )
        return sorted(ids)

    def _list(self, prefix: str) -> tuple[int, list[str]]:
        status, body = self.client.json("LIST", f"{_LOOKUP}/{prefix}")
        return status, list((body.get("data") or {}).get("keys") or [])

    def _credential(self, lease_id: str, data: dict[str, Any]) -> Credential:
        issued = parse_vault_time(data.get("issue_time"))
        expires = parse_vault_time(data.get("expire_time"))
        renewed = parse_vault_time(data.get("last_renewal"))
        ttl = _seconds(data.get("ttl"))
        issuing_path = lease_id.rsplit("/", 1)[0]
        tags = {
            "engine": lease_id.split("/", 1)[0],
            "renewable": "yes" if data.get("renewable") else "no",
            "holder": "unknown",
        }
        return Credential(
            id=credential_id(self.source, LEASE_KIND, lease_id),
            source=self.source,
            kind=LEASE_KIND,
            native_id=lease_id,
            name=lease_id,
            location=issuing_path,
            environment=self.environment,
            scope=f"issued by {issuing_path}",
            created_at=issued,
            rotated_at=renewed or issued,
            expires_at=expires,
            ttl_seconds=ttl,
            tags=tags,
        )
