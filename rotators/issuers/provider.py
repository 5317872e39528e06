"""``provider``: a key a person mints and revokes at its provider (OpenAI, Stripe, GitHub...).

keyshift cannot mint such a key, and it never replaces one with a value the provider did not
issue. It guides a person through the checklist instead: mint a new key at the provider's
console (keeping the old one active), paste it into a hidden prompt (never echoed, never
stored), and keyshift delivers it, runs the provider's verify hook, and after the grace period
asks the person to revoke the old key and checks the provider refuses it. Without a verify
hook keyshift checks delivery only, and says so. Also the issuer of any secret whose issuer is
not declared ("unknown"): manual, never random.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rotators.base import (
    CredentialInfo,
    Handle,
    Issued,
    NeedsPerson,
    PartPlan,
    RotatorError,
    RunContext,
    Value,
    VerifyFailed,
)

UNKNOWN = "unknown"


class ProviderIssuer:
    role: ClassVar[str] = "issuer"
    name: ClassVar[str] = "provider"
    manual: ClassVar[bool] = True
    public_parts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: Mapping[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.provider = str(spec.get("provider") or UNKNOWN)
        self.parts = tuple(spec.get("parts") or ("value",))
        info = ctx.provider(self.provider) if self.provider != UNKNOWN else {}
        self.console = info.get("console_url")
        self.hook = info.get("verify")

    @property
    def at(self) -> str:
        if self.provider == UNKNOWN:
            return "wherever it is issued (its issuer is not declared)"
        return f"{self.provider}" + (f" ({self.console})" if self.console else "")

    def plan(self, cred: CredentialInfo) -> PartPlan:
        verify = (
            f"verify: {self.provider}'s hook ({self.hook['method']} {self.hook['url']}) "
            "accepts the new key, and each target reads it back"
            if self.hook
            else f"verify: each target reads it back (no verify hook is declared for "
            f"{self.provider}: keyshift cannot ask it whether the key works)"
        )
        refused_check = (
            f"check: {self.provider}'s hook refuses the old key"
            if self.hook
            else "check: none possible without a verify hook"
        )
        warnings = []
        if self.provider == UNKNOWN:
            warnings.append(
                "what this secret holds is not declared: keyshift will not generate a "
                "replacement; declare its issuer under rotations: to rotate it unattended"
            )
        return PartPlan(
            steps=[
                f"issue: a person mints a new key at {self.at}, keeping the old one active, "
                "and pastes it into a hidden prompt",
                verify,
                f"revoke: after the grace period a person revokes the old key at {self.at} "
                "and confirms",
                refused_check,
            ],
            needs=[f"a person with an account at {self.provider} that can mint and revoke keys"],
            warnings=warnings,
        )

    def revoke_stages(self) -> tuple[str, ...]:
        return ("revoke",)

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        return {"provider": self.provider}

    def _person(self, what: str) -> Any:
        if self.ctx.interaction is None:
            raise NeedsPerson(
                f"{what} needs a person: run keyshift rotate in a terminal, or use the TUI"
            )
        return self.ctx.interaction

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        person = self._person(f"minting a new {self.provider} key")
        person.show(
            f"1. Mint a new key for {cred.name} at {self.at}.\n"
            "   Keep the old key active: agents use it until the new one is delivered.\n"
            "2. Paste the new key below (it is not shown, and never stored)."
        )
        value = {}
        for part in self.parts:
            label = "new key" if part == "value" else f"new {part}"
            raw = person.ask_secret(f"{label} for {cred.name}")
            if raw is None:
                raise RotatorError("cancelled: no new key was given")
            raw = raw.strip()
            if not raw or any(ch.isspace() for ch in raw):
                raise RotatorError(f"the {label} is empty or contains whitespace")
            value[part] = self.ctx.keep(raw)
        return Issued(value=value, handle={"provider": self.provider})

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        if not self.hook:
            return
        if self.ctx.check_hook(self.hook, issued.value[self.parts[0]]) != "valid":
            raise VerifyFailed(f"{self.provider} refused the new key")

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        if self.ctx.interaction is not None:
            self.ctx.interaction.show(
                f"The rotation was rolled back: if you minted a new key for it at {self.at}, "
                "revoke that one; the old key is still the one in use."
            )

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None:
        person = self._person(f"revoking the old {self.provider} key")
        if not person.confirm(
            f"Revoke the old key of {cred.name} at {self.at} now. Done?"
        ):
            raise NeedsPerson(f"the old {self.provider} key is not revoked yet (not confirmed)")

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        if not self.hook:
            return None
        return self.ctx.check_hook(self.hook, old_value[self.parts[0]]) == "valid"
