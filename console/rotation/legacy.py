"""Third-party rotators written against keyshift's first protocol, run as an issuer.

A whole ``Rotator`` (plan, create, verify, promote, revoke, rollback) becomes an issuer with
no value parts and no targets: its create is the issue step, its verify the verify step, its
promote runs after the (empty) target promotes, its revoke is the one revoke stage and its
rollback the discard. The journal records its ``Pending`` as the issue's handle.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rotators.base import (
    CredentialInfo,
    Handle,
    Issued,
    PartPlan,
    Pending,
    Rotator,
    RunContext,
    Value,
)


def _pending(handle: Handle | None, run_id: str) -> Pending:
    if not handle or not handle.get("version"):
        return Pending(version="", detail={"run_id": run_id})
    return Pending(
        version=str(handle["version"]),
        previous_version=handle.get("previous_version"),
        detail=dict(handle.get("detail") or {}),
    )


class LegacyIssuer:
    role: ClassVar[str] = "issuer"
    name: ClassVar[str] = "legacy"
    manual: ClassVar[bool] = False
    public_parts: ClassVar[tuple[str, ...]] = ()
    parts: tuple[str, ...] = ()

    def __init__(self, rotator: Rotator, ctx: RunContext) -> None:
        self.rotator = rotator
        self.ctx = ctx
        self.label = str(getattr(rotator, "name", type(rotator).__name__))

    def plan(self, cred: CredentialInfo) -> PartPlan:
        plan = self.rotator.plan(cred)
        if plan.manual:
            return PartPlan(refused=f"rotator {self.label} is manual: {plan.summary}")
        steps = [s if ":" in s else f"issue: {s}" for s in plan.steps]
        return PartPlan(
            steps=steps,
            needs=list(plan.needs),
            warnings=list(plan.warnings),
            downtime=None if plan.zero_downtime else "the rotator does not promise zero downtime",
        )

    def revoke_stages(self) -> tuple[str, ...]:
        return ("revoke",)

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        return {}

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        pending = self.rotator.create(cred, self.ctx.run_id)
        return Issued(
            {},
            {
                "version": pending.version,
                "previous_version": pending.previous_version,
                "detail": pending.detail,
            },
        )

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        self.rotator.verify(cred, _pending(issued.handle, self.ctx.run_id))

    def promote(self, cred: CredentialInfo, handle: Handle) -> None:
        self.rotator.promote(cred, _pending(handle, self.ctx.run_id))

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        self.rotator.rollback(cred, _pending(handle, self.ctx.run_id))

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None:
        previous = (old.get("new") or {}).get("previous_version")
        if previous:
            self.rotator.revoke(cred, str(previous))

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        return None


def build(rotator_cls: Any, ctx: RunContext) -> LegacyIssuer:
    return LegacyIssuer(rotator_cls(ctx), ctx)
