"""``vault-approle``: a new secret-id for an agent's AppRole role.

issue mints a secret-id tagged ``keyshift_run=<run id>`` in its metadata (so a crash after
minting leaves something a rollback can find and destroy); verify logs in with it (or, for a
role whose secret-ids have a use limit, looks it up instead of spending a use); revoke
destroys the old secret-id by its accessor after the grace period.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import hvac
import hvac.exceptions

from rotators.base import (
    CredentialInfo,
    Handle,
    Issued,
    PartPlan,
    RotatorError,
    RunContext,
    Value,
    VerifyFailed,
)
from rotators.vault_common import vault_errors

RUN_META = "keyshift_run"


class VaultAppRoleIssuer:
    role: ClassVar[str] = "issuer"
    name: ClassVar[str] = "vault-approle"
    manual: ClassVar[bool] = False
    public_parts: ClassVar[tuple[str, ...]] = ()
    parts = ("secret_id",)

    def __init__(self, spec: Mapping[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.source = str(spec["source"])
        self.role_name = str(spec["role"])
        self.mount = str(spec.get("mount") or "approle").strip("/")
        self.base = f"/v1/auth/{self.mount}/role/{self.role_name}"

    @property
    def client(self) -> Any:
        return self.ctx.vault_client(self.source)

    def _errors(self, step: str) -> Any:
        return vault_errors(step, f"AppRole role {self.role_name}", self.source)

    def _role(self) -> dict[str, Any]:
        try:
            return dict(self.client.adapter.get(self.base)["data"])
        except hvac.exceptions.InvalidPath:
            raise RotatorError(f"no AppRole role {self.role_name} at auth/{self.mount}") from None

    def plan(self, cred: CredentialInfo) -> PartPlan:
        with self._errors("plan"):
            role = self._role()
        warnings = []
        uses = int(role.get("secret_id_num_uses") or 0)
        if uses:
            warnings.append(
                f"secret-ids of {self.role_name} allow {uses} use(s): verify looks the new one "
                "up instead of logging in, so no use is spent"
            )
        ttl = int(role.get("secret_id_ttl") or 0)
        if ttl:
            warnings.append(f"secret-ids of {self.role_name} expire {ttl} s after they are minted")
        return PartPlan(
            steps=[
                f"issue: mint a secret-id for role {self.role_name} (tagged with the run id)",
                "verify: log in with it" if not uses else "verify: look it up",
                "revoke: destroy the old secret-id by its accessor after the grace period",
            ],
            needs=[
                f"update on auth/{self.mount}/role/{self.role_name}/secret-id, "
                "secret-id/lookup, secret-id-accessor/lookup, secret-id-accessor/destroy; "
                "read on role-id",
            ],
            warnings=warnings,
        )

    def revoke_stages(self) -> tuple[str, ...]:
        return ("revoke",)

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        if not old or "secret_id" not in old:
            return {}
        with self._errors("identify"):
            data = self._lookup(old["secret_id"].reveal())
        return {"accessor": data["secret_id_accessor"]} if data else {}

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        with self._errors("issue"):
            got = self.client.adapter.post(
                f"{self.base}/secret-id", json={"metadata": f'{{"{RUN_META}":"{self.ctx.run_id}"}}'}
            )["data"]
            value = self.ctx.keep(got["secret_id"])
            self.ctx.checkpoint("vault-approle:minted")
            return Issued({"secret_id": value}, {"accessor": got["secret_id_accessor"]})

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        secret_id = issued.value["secret_id"].reveal()
        with self._errors("verify"):
            role = self._role()
            if int(role.get("secret_id_num_uses") or 0):
                if not self._lookup(secret_id):
                    raise VerifyFailed(f"the new secret-id of {self.role_name} is not known")
                return
            role_id = self.client.adapter.get(f"{self.base}/role-id")["data"]["role_id"]
            agent = hvac.Client(
                url=self.client.url, timeout=30, session=self.client.adapter.session
            )
            try:
                login = agent.auth.approle.login(role_id, secret_id, mount_point=self.mount)
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
                raise VerifyFailed(
                    f"logging in as {self.role_name} with the new secret-id failed"
                ) from None
            self.ctx.keep(login["auth"]["client_token"])
            agent.token = login["auth"]["client_token"]
            agent.auth.token.revoke_self()  # the proof needs no token left behind

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        with self._errors("rollback"):
            accessors = [handle["accessor"]] if handle and handle.get("accessor") else None
            if accessors is None:
                accessors = [a for a, meta in self._accessors() if meta.get(RUN_META)
                             == self.ctx.run_id]
            for accessor in accessors:
                self._destroy(accessor)

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None:
        if old.get("accessor"):
            with self._errors("revoke"):
                self._destroy(old["accessor"])

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        with self._errors("check"):
            return bool(self._lookup(old_value["secret_id"].reveal()))

    # --- helpers -----------------------------------------------------------------------------

    def _lookup(self, secret_id: str) -> dict[str, Any] | None:
        try:
            got = self.client.adapter.post(
                f"{self.base}/secret-id/lookup", json={"secret_id": secret_id}
            )
        except hvac.exceptions.InvalidPath:
            return None
        return (got or {}).get("data") if isinstance(got, dict) else None

    def _accessors(self) -> list[tuple[str, dict[str, Any]]]:
        try:
            keys = self.client.adapter.request("LIST", f"{self.base}/secret-id")["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return []
        out = []
        for accessor in keys:
            try:
                data = self.client.adapter.post(
                    f"{self.base}/secret-id-accessor/lookup", json={"secret_id_accessor": accessor}
                )["data"]
            except hvac.exceptions.InvalidPath:
                continue
            out.append((accessor, dict(data.get("metadata") or {})))
        return out

    def _destroy(self, accessor: str) -> None:
        # OpenBao answers 500 to destroying an accessor that is already gone, so look first:
        # destroying twice must be a no-op, not a failure
        try:
            self.client.adapter.post(
                f"{self.base}/secret-id-accessor/lookup", json={"secret_id_accessor": accessor}
            )
        except hvac.exceptions.InvalidPath:
            return
        self.client.adapter.post(
            f"{self.base}/secret-id-accessor/destroy", json={"secret_id_accessor": accessor}
        )
