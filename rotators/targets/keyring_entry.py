"""Deliver to OS keyring entries (``keyring:<service>/<name>``) an agent reads.

A keyring entry keeps no history: the new value replaces the old one at deliver, and the old
one lives on only in the run's memory, for a rollback in the same process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import keyring
import keyring.errors

from rotators.base import CredentialInfo, Handle, PartPlan, RotatorError, RunContext, Value
from rotators.targets.common import matches


def _split(ref: str) -> tuple[str, str]:
    service, _, name = ref.removeprefix("keyring:").partition("/")
    return service, name


class KeyringTarget:
    role: ClassVar[str] = "target"
    name: ClassVar[str] = "keyring"
    stages: ClassVar[bool] = False

    def __init__(self, spec: Mapping[str, Any], fields: Mapping[str, str], ctx: RunContext):
        self.ctx = ctx
        self.fields = dict(fields)  # part -> keyring:<service>/<name>

    def where(self) -> str:
        return ", ".join(self.fields.values())

    def _call(self, step: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except keyring.errors.PasswordDeleteError:
            return None
        except keyring.errors.KeyringError as exc:
            raise RotatorError(
                f"{step} {self.where()}: the keyring is unavailable ({type(exc).__name__})",
                retryable=True,
            ) from None

    def plan(self, cred: CredentialInfo) -> PartPlan:
        self.read()  # the keyring answers, or the plan fails here rather than at deliver
        return PartPlan(
            steps=[f"deliver: replace the keyring entr{'ies' if len(self.fields) > 1 else 'y'} "
                   f"{self.where()}; consumers read the new value from then on"],
        )

    def read(self) -> Value | None:
        value = {}
        for part, ref in self.fields.items():
            got = self._call("read", keyring.get_password, *_split(ref))
            if got:
                value[part] = self.ctx.keep(got)
        return value or None

    def deliver(self, value: Value) -> Handle:
        for part, ref in self.fields.items():
            if part not in value:
                raise RotatorError(f"deliver {ref}: no value for {part}")
            self._call("deliver", keyring.set_password, *_split(ref), value[part].reveal())
        return {}

    def read_delivered(self, handle: Handle) -> Value | None:
        return self.read()

    def find_delivered(self, expected: Mapping[str, str]) -> tuple[Handle, Value] | None:
        current = self.read()
        return ({}, current) if current and matches(self.ctx, current, expected) else None

    def read_previous(self, handle: Handle) -> Value | None:
        return None

    def promote(self, handle: Handle) -> None:
        return None

    def retire(self, handle: Handle) -> None:
        return None

    def rollback(self, handle: Handle | None, old: Value | None) -> None:
        if old is None:
            raise RotatorError(
                f"cannot put the old value back in {self.where()}: it was not kept "
                "(the run that read it ended)"
            )
        for part, ref in self.fields.items():
            if part in old:
                self._call("rollback", keyring.set_password, *_split(ref), old[part].reveal())
            else:
                self._call("rollback", keyring.delete_password, *_split(ref))
