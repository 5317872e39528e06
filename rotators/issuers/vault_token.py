"""``vault-token``: a replacement Vault token with the old one's policies, TTL and role.

identify looks the current token up (its accessor, policies, TTL, token role, orphan flag,
metadata); issue creates a new token with the same properties, tagged ``keyshift_run`` in its
metadata; verify looks it up with itself (lookup-self) and checks its policies; revoke revokes
the old token by accessor after the grace period.

A current token that is no longer valid (an incident's contain revoked it by accessor, or it
expired) is no reason to leave its consumers without one when the issuer names a token role:
the new token is minted from the role's own settings (its allowed policies, orphan flag,
renewable, period, TTLs) and there is nothing left to revoke (the handle has no accessor). The
engine still asks the old value after revoke, so a token that was in fact valid fails the run
loudly. Without a role keyshift cannot know what to copy and refuses, naming the fix. When
keyshift's own token may not look the current one up, the current token looks itself up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar

import hvac
import hvac.exceptions

from rotators.base import (
    CredentialInfo,
    Handle,
    Issued,
    PartPlan,
    Refused,
    RunContext,
    Value,
    VerifyFailed,
)
from rotators.vault_common import vault_errors

RUN_META = "keyshift_run"


class VaultTokenIssuer:
    role: ClassVar[str] = "issuer"
    name: ClassVar[str] = "vault-token"
    manual: ClassVar[bool] = False
    public_parts: ClassVar[tuple[str, ...]] = ()
    parts = ("token",)

    def __init__(self, spec: Mapping[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.source = str(spec["source"])
        self.token_role = spec.get("role")
        self.ttl = spec.get("ttl")

    @property
    def client(self) -> Any:
        return self.ctx.vault_client(self.source)

    def _errors(self, step: str) -> Any:
        return vault_errors(step, "token", self.source)

    def plan(self, cred: CredentialInfo) -> PartPlan:
        return PartPlan(
            steps=[
                "issue: create a token with the current one's policies, TTL, token role and "
                "orphan flag (tagged with the run id)",
                "verify: look the new token up with itself and compare its policies",
                "revoke: revoke the old token by its accessor after the grace period",
            ],
            needs=[
                "update on auth/token/lookup, auth/token/create (or create/<role>, "
                "create-orphan), auth/token/revoke-accessor"
            ],
        )

    def revoke_stages(self) -> tuple[str, ...]:
        return ("revoke",)

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        if not old or "token" not in old:
            raise Refused(
                "no current token where consumers read it: keyshift copies a token's policies "
                "from the one it replaces"
            )
        with self._errors("identify"):
            try:
                data = self.client.adapter.post(
                    "/v1/auth/token/lookup", json={"token": old["token"].reveal()}
                )["data"]
            except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
                data = self._lookup_self(old["token"].reveal())
        if data is None:
            return self._from_role()
        policies = sorted(p for p in data.get("policies") or [] if p != "root")
        if "root" in (data.get("policies") or []):
            raise Refused("refusing to mint a root token")
        return {
            "accessor": data["accessor"],
            "policies": policies,
            "ttl": int(data.get("creation_ttl") or 0),
            "role": self.token_role or data.get("role") or None,
            "orphan": bool(data.get("orphan")),
            "renewable": bool(data.get("renewable")),
            "period": int(data.get("period") or 0),
            "explicit_max_ttl": int(data.get("explicit_max_ttl") or 0),
            "display_name": str(data.get("display_name") or "").removeprefix("token-"),
            "meta": dict(data.get("meta") or {}),
        }

    def _lookup_self(self, token: str) -> dict[str, Any] | None:
        """The token's own view of itself, or None when it is refused (revoked, expired)."""
        agent = hvac.Client(url=self.client.url, timeout=30, session=self.client.adapter.session)
        agent.token = token
        try:
            return dict(agent.auth.token.lookup_self()["data"])
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            return None

    def _from_role(self) -> Handle:
        """What to mint when the current token is gone: the declared token role's settings."""
        if not self.token_role:
            raise Refused(
                "the current token is not valid (expired or revoked) and the issuer names no "
                "token role to mint from: declare issuer.role, or put a valid token where "
                "its consumers read it"
            )
        with self._errors("identify"):
            try:
                role = self.client.adapter.get(f"/v1/auth/token/roles/{self.token_role}")["data"]
            except hvac.exceptions.InvalidPath:
                raise Refused(f"the current token is not valid and token role "
                              f"{self.token_role!r} does not exist") from None
        allowed = sorted(p for p in role.get("allowed_policies") or [] if p != "root")
        if "default" not in (role.get("disallowed_policies") or []):
            # what Vault gives a role's token unless asked not to (lookup-self needs it)
            allowed = sorted({*allowed, "default"})
        return {
            "accessor": None,  # nothing to revoke: the old token is already refused
            "old_invalid": True,
            "policies": allowed,
            "ttl": int(role.get("token_ttl") or 0),
            "role": self.token_role,
            "orphan": bool(role.get("orphan")),
            "renewable": bool(role.get("renewable", True)),
            "period": int(role.get("token_period") or role.get("period") or 0),
            "explicit_max_ttl": int(role.get("token_explicit_max_ttl")
                                    or role.get("explicit_max_ttl") or 0),
            "display_name": self.token_role,
            "meta": {},
        }

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        body: dict[str, Any] = {
            "policies": [p for p in old["policies"] if p != "default"],
            "no_default_policy": "default" not in old["policies"],
            "meta": {**old.get("meta", {}), RUN_META: self.ctx.run_id},
            "renewable": old.get("renewable", True),
            "display_name": old.get("display_name") or "keyshift",
        }
        ttl = self.ttl or (f"{old['ttl']}s" if old.get("ttl") else None)
        if ttl:
            body["ttl"] = ttl
        if old.get("period"):
            body["period"] = f"{old['period']}s"
        if old.get("explicit_max_ttl"):
            body["explicit_max_ttl"] = f"{old['explicit_max_ttl']}s"
        if old.get("role"):
            path = f"/v1/auth/token/create/{old['role']}"
        elif old.get("orphan"):
            path = "/v1/auth/token/create-orphan"
        else:
            path = "/v1/auth/token/create"
        with self._errors("issue"):
            auth = self.client.adapter.post(path, json=body)["auth"]
        value = self.ctx.keep(auth["client_token"])
        self.ctx.checkpoint("vault-token:minted")
        return Issued({"token": value}, {"accessor": auth["accessor"]})

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        agent = hvac.Client(url=self.client.url, timeout=30, session=self.client.adapter.session)
        agent.token = issued.value["token"].reveal()
        with self._errors("verify"):
            try:
                data = agent.auth.token.lookup_self()["data"]
            except hvac.exceptions.Forbidden:
                raise VerifyFailed("the new token is refused by lookup-self") from None
        if RUN_META not in (data.get("meta") or {}):
            raise VerifyFailed("the new token is not the one this run created")

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        with self._errors("rollback"):
            if handle and handle.get("accessor"):
                self._revoke(handle["accessor"])
                return
            for accessor in self._run_accessors():
                self._revoke(accessor)

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None:
        if old.get("accessor"):
            with self._errors("revoke"):
                self._revoke(old["accessor"])

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        agent = hvac.Client(url=self.client.url, timeout=30, session=self.client.adapter.session)
        agent.token = old_value["token"].reveal()
        with self._errors("check"):
            try:
                agent.auth.token.lookup_self()
            except hvac.exceptions.Forbidden:
                return False
        return True

    def _revoke(self, accessor: str) -> None:
        # an accessor already revoked or expired is fine: revoking is idempotent
        with contextlib.suppress(hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
            self.client.auth.token.revoke_accessor(accessor)

    def _run_accessors(self) -> list[str]:
        """Tokens this run created before a crash lost their accessor: found by metadata
        (listing accessors needs sudo on auth/token/accessors)."""
        keys = self.client.adapter.request("LIST", "/v1/auth/token/accessors")["data"]["keys"]
        found = []
        for accessor in keys:
            try:
                data = self.client.auth.token.lookup_accessor(accessor)["data"]
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
                continue
            if (data.get("meta") or {}).get(RUN_META) == self.ctx.run_id:
                found.append(accessor)
        return found
