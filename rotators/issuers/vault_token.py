"""``vault-token``: a replacement Vault token with the old one's policies, TTL and role.

identify looks the current token up with keyshift's own token (``auth/token/lookup``: its
accessor, policies, TTL, period, token role, orphan flag, uses, metadata); issue creates a new
token with exactly those properties, asking for the policy list explicitly (an empty list makes
Vault copy the caller's policies: keyshift's root) and tagged ``keyshift_run`` in its metadata;
verify looks it up and compares its policies; revoke revokes the old token by accessor after the
grace period.

A current token that Vault says is gone (``bad token``: an incident's contain revoked it by
accessor, or it expired) is no reason to leave its consumers without one when the issuer names
a token role. The new token gets what the old one had when keyshift last saw it (the engine
passes ``remembered``: the handles of earlier runs of this rotation, by the fingerprint of the
token each describes, or the one token of the role the last sync listed for the rotation's
agents); the role only limits it (its allowed policies). Nothing remembered, a root policy or
an empty policy list is refused, never guessed from the role. When keyshift may not look the
token up, the token looks itself up; when that is refused too keyshift cannot tell a revoked
token from one without the default policy, and refuses.
"""

from __future__ import annotations

import contextlib
import fnmatch
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
    RotatorError,
    RunContext,
    Value,
    VerifyFailed,
)
from rotators.vault_common import vault_errors

RUN_META = "keyshift_run"
GONE = "bad token"  # what auth/token/lookup answers for a token Vault no longer has


def _errors_of(exc: Exception) -> list[str]:
    return [str(e) for e in (getattr(exc, "errors", None) or [])]


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
        # what keyshift last saw of this rotation's tokens (the engine reads it from the store)
        self.remembered: Mapping[str, Any] = spec.get("remembered") or {}

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
                "verify: look the new token up and compare its policies",
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
            data = self._lookup(old["token"].reveal(), "identify")
        if data is None:
            return self._from_memory(old["token"])
        return self._handle(data, accessor=data["accessor"])

    def _handle(self, data: Mapping[str, Any], *, accessor: str | None) -> Handle:
        """What issue asks for: the token's own properties, with an explicit policy list."""
        given = [str(p) for p in data.get("policies") or []]
        if "root" in given:
            raise Refused("refusing to mint a root token")
        if not given:
            # an empty list makes Vault give the new token keyshift's own policies
            raise Refused("the token has no policies to copy: keyshift never mints a token "
                          "without an explicit policy list")
        return {
            "accessor": accessor,
            "policies": sorted(set(given)),
            "ttl": int(data.get("creation_ttl") or data.get("ttl") or 0),
            "role": self.token_role or data.get("role") or None,
            "orphan": bool(data.get("orphan")),
            "renewable": bool(data.get("renewable", True)),
            "period": int(data.get("period") or 0),
            "explicit_max_ttl": int(data.get("explicit_max_ttl") or 0),
            "num_uses": int(data.get("num_uses") or 0),
            "display_name": str(data.get("display_name") or "").removeprefix("token-"),
            "meta": {k: v for k, v in dict(data.get("meta") or {}).items() if k != RUN_META},
        }

    def _lookup(self, token: str, step: str) -> dict[str, Any] | None:
        """The token's properties; None only when keyshift's own lookup says Vault no longer
        has it. A 403 from lookup-self alone means "revoked" or "no default policy": keyshift
        cannot tell which, so it refuses rather than take a valid token for a revoked one."""
        try:
            return dict(self.client.adapter.post("/v1/auth/token/lookup",
                                                 json={"token": token})["data"])
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest) as exc:
            if GONE in _errors_of(exc):
                return None
        data = self._lookup_self(token)
        if data is None:
            raise Refused(
                f"{step}: keyshift's token may not look tokens up (auth/token/lookup) and the "
                "current token cannot look itself up, so keyshift cannot tell whether it was "
                "revoked: grant keyshift's policy update on auth/token/lookup"
            )
        return data

    def _lookup_self(self, token: str) -> dict[str, Any] | None:
        agent = hvac.Client(url=self.client.url, timeout=30, session=self.client.adapter.session)
        agent.token = token
        try:
            return dict(agent.auth.token.lookup_self()["data"])
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            return None

    def _from_memory(self, token: Any) -> Handle:
        """What to mint when Vault no longer has the current token: what it had when keyshift
        last saw it, within what the declared token role allows."""
        if not self.token_role:
            raise Refused(
                "the current token is not valid (expired or revoked) and the issuer names no "
                "token role to mint from: declare issuer.role, or put a valid token where "
                "its consumers read it"
            )
        seen = self._seen(token)
        with self._errors("identify"):
            try:
                role = self.client.adapter.get(f"/v1/auth/token/roles/{self.token_role}")["data"]
            except hvac.exceptions.InvalidPath:
                raise Refused(f"the current token is not valid and token role "
                              f"{self.token_role!r} does not exist") from None
        handle = self._handle(seen, accessor=None)  # nothing to revoke: Vault refuses it already
        self._within(role, handle["policies"])
        return {**handle, "old_invalid": True, "role": self.token_role,
                "display_name": handle["display_name"] or self.token_role,
                "remembered_from": str(seen.get("from") or "")}

    def _seen(self, token: Any) -> Mapping[str, Any]:
        fp = self.ctx.fingerprint(token)
        for run in self.remembered.get("runs") or []:
            if fp in (run.get("fingerprints") or []):
                return run
        synced = self.remembered.get("synced")
        if synced and synced.get("accessor"):
            with self._errors("identify"):
                try:
                    self.client.adapter.post("/v1/auth/token/lookup-accessor",
                                             json={"accessor": synced["accessor"]})
                except (hvac.exceptions.InvalidRequest, hvac.exceptions.InvalidPath):
                    return synced  # the token the sync saw is gone too: the one consumers read
            raise Refused(
                f"the current token is not valid, and the token of role {self.token_role!r} "
                f"the last sync saw for this rotation ({str(synced['accessor'])[:8]}) still "
                "is: keyshift cannot tell which policies the current one had; put a valid "
                "token where consumers read it"
            )
        raise Refused(
            "the current token is not valid (expired or revoked) and keyshift has no record of "
            "its policies and TTL (no earlier run of this rotation minted it, and the last sync "
            f"saw no single token of role {self.token_role!r} for its agents): keyshift will "
            "not guess them from the role; mint one by hand and put it where consumers read it"
        )

    def _within(self, role: Mapping[str, Any], policies: list[str]) -> None:
        """The role is a limit, never a source of policies: every policy asked for must be one
        it allows (Vault checks too; this says which in one line)."""
        wanted = [p for p in policies if p != "default"]
        allowed = list(role.get("allowed_policies") or [])
        globs = list(role.get("allowed_policies_glob") or [])
        if allowed or globs:
            outside = [p for p in wanted if p not in allowed
                       and not any(fnmatch.fnmatchcase(p, g) for g in globs)]
        else:
            outside = []
        denied = [p for p in policies if p in (role.get("disallowed_policies") or [])
                  or any(fnmatch.fnmatchcase(p, g)
                         for g in role.get("disallowed_policies_glob") or [])]
        if outside or denied:
            raise Refused(f"token role {self.token_role!r} does not allow "
                          f"{', '.join(sorted({*outside, *denied}))}, which the old token had")

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        policies = [str(p) for p in old.get("policies") or []]
        if not policies or "root" in policies:
            raise Refused("refusing to mint a token without an explicit, non-root policy list")
        body: dict[str, Any] = {
            # default goes in the list itself: an empty list would copy keyshift's policies
            "policies": policies,
            "no_default_policy": "default" not in policies,
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
        if old.get("num_uses"):
            body["num_uses"] = int(old["num_uses"])
        if old.get("role"):
            path = f"/v1/auth/token/create/{old['role']}"
        elif old.get("orphan"):
            path = "/v1/auth/token/create-orphan"
        else:
            path = "/v1/auth/token/create"
        with self._errors("issue"):
            auth = self.client.adapter.post(path, json=body)["auth"]
        got = sorted(set(auth.get("policies") or []))
        if got != sorted(set(policies)):
            # never hand consumers a token broader (or narrower) than the one it replaces
            with self._errors("issue"):
                self._revoke(auth["accessor"])
            raise RotatorError(f"Vault minted a token with policies {', '.join(got)} instead "
                               f"of {', '.join(sorted(set(policies)))}: revoked it")
        value = self.ctx.keep(auth["client_token"])
        self.ctx.checkpoint("vault-token:minted")
        return Issued({"token": value}, {"accessor": auth["accessor"], "policies": got})

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        with self._errors("verify"):
            data = self._lookup(issued.value["token"].reveal(), "verify")
        if data is None:
            raise VerifyFailed("Vault does not know the new token")
        if RUN_META not in (data.get("meta") or {}):
            raise VerifyFailed("the new token is not the one this run created")
        expected = issued.handle.get("policies")
        if expected is not None and sorted(set(data.get("policies") or [])) != expected:
            raise VerifyFailed("the new token's policies are not the old one's")

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
        """Asked with keyshift's own lookup: a 403 on lookup-self is also what a valid token
        without the default policy gets, so it alone proves nothing (None: cannot tell)."""
        with self._errors("check"):
            try:
                return self._lookup(old_value["token"].reveal(), "check") is not None
            except Refused:
                return None

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
