"""``generated``: keyshift mints the value itself (opt-in, at least 128 bits of entropy).

For a password or shared secret whose every consumer reads it from the targets (a webhook
signing secret both sides read from one store, a token a service only compares). Nothing
else can prove such a value except a declared verify hook, so verify reads it back at each
target; there is nothing to revoke at an issuer: the old value dies when the targets drop it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rotators.base import (
    CredentialInfo,
    Handle,
    Issued,
    PartPlan,
    RunContext,
    Value,
    VerifyFailed,
)
from rotators.values import MIN_GENERATED_BITS, entropy_bits, generate


class GeneratedIssuer:
    role: ClassVar[str] = "issuer"
    name: ClassVar[str] = "generated"
    manual: ClassVar[bool] = False
    public_parts: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: Mapping[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        gen = dict(spec.get("generator") or {})
        self.length = int(gen.get("length", 40))
        self.alphabet = str(gen.get("alphabet", "alnum"))
        self.prefix = str(gen.get("prefix", ""))
        self.parts = tuple(spec.get("parts") or ("value",))
        self.hook = spec.get("verify")

    def plan(self, cred: CredentialInfo) -> PartPlan:
        bits = entropy_bits(self.length, self.alphabet)
        if bits < MIN_GENERATED_BITS:  # validated at load; a plug-in may build its own spec
            return PartPlan(refused=f"the generator gives {bits:.0f} bits, below 128")
        verify = (
            f"verify: the declared hook ({self.hook['method']} {self.hook['url']}) accepts it, "
            "and each target reads it back"
            if self.hook
            else "verify: each target reads it back (a generated value has no issuer to ask)"
        )
        return PartPlan(
            steps=[
                f"issue: generate {self.length} {self.alphabet} characters ({bits:.0f} bits) "
                f"for {', '.join(self.parts)}",
                verify,
                "revoke: nothing at an issuer; the old value is gone once every target drops it",
            ]
        )

    def revoke_stages(self) -> tuple[str, ...]:
        return ()

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        return {}

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        value = {
            part: self.ctx.keep(generate(self.length, self.alphabet, self.prefix).reveal())
            for part in self.parts
        }
        return Issued(value=value, handle={})

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        if self.hook and self.ctx.check_hook(self.hook, issued.value[self.parts[0]]) != "valid":
            raise VerifyFailed("the verify hook refused the new value")

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        return None  # minted in memory only: nothing exists anywhere to discard

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None:
        return None

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        if not self.hook:
            return None
        return self.ctx.check_hook(self.hook, old_value[self.parts[0]]) == "valid"
