"""The manual rotator: for credentials no API can rotate (most provider keys).

Its plan is a checklist a person works through (issue a new key at the provider, deliver it,
confirm, revoke the old one). keyshift cannot perform those steps, so each step method refuses
with a clear error; playbooks and incidents present them as checklist items instead.
"""

from __future__ import annotations

from typing import ClassVar

from rotators.base import CredentialInfo, Pending, Plan, RotatorContext, RotatorError

CHECKLIST = {
    "create": "issue a new key at the provider (keep the old one active)",
    "verify": "check the new key works (a test call) before anyone depends on it",
    "promote": "deliver the new key where agents read it (env file, keyring, vault)",
    "revoke": "after the grace period, revoke the old key at the provider",
}


class ManualRotator:
    name: ClassVar[str] = "manual"
    kinds: ClassVar[tuple[str, ...]] = (
        "api-key",
        "bot-token",
        "code-host-token",
        "payment-key",
        "webhook",
        "other",
    )
    manual: ClassVar[bool] = True

    def __init__(self, context: RotatorContext) -> None:
        self.context = context

    def plan(self, cred: CredentialInfo) -> Plan:
        provider = cred.metadata.get("provider") or "the provider"
        return Plan(
            rotator=self.name,
            summary=(
                f"manual: a person rotates {cred.name} at {provider} and confirms each step "
                "in the checklist"
            ),
            steps=[f"{step}: {text}" for step, text in CHECKLIST.items()],
            zero_downtime=True,  # if the provider allows two keys at once; the checklist says so
            manual=True,
            needs=[f"an account at {provider} that can issue and revoke keys"],
        )

    def _refuse(self, step: str, cred: CredentialInfo) -> RotatorError:
        return RotatorError(
            f"manual: confirm {step!r} for {cred.id} in the checklist "
            f"({CHECKLIST[step]}); keyshift cannot do it through an API"
        )

    def create(self, cred: CredentialInfo, run_id: str) -> Pending:
        raise self._refuse("create", cred)

    def verify(self, cred: CredentialInfo, pending: Pending) -> None:
        raise self._refuse("verify", cred)

    def promote(self, cred: CredentialInfo, pending: Pending) -> None:
        raise self._refuse("promote", cred)

    def revoke(self, cred: CredentialInfo, previous_version: str) -> None:
        raise self._refuse("revoke", cred)

    def rollback(self, cred: CredentialInfo, pending: Pending) -> None:
        # Nothing was created by keyshift, so there is nothing for it to discard.
        return None
