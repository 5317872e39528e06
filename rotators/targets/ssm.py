"""Deliver to an SSM Parameter Store parameter: a new version, and a label moved to it.

deliver writes the new value as a new version (``Overwrite``); readers of the parameter by
name get it at once, readers of ``<name>:<label>`` only once promote moves the label. SSM keeps
every version's history, so the old value stays readable by version number (``name:3``): a
resumed run recovers it from there. Versions cannot be deleted one by one, so retire leaves the
history as it is; the plan says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rotators.aws_common import aws_errors, error_code
from rotators.base import CredentialInfo, Handle, PartPlan, RotatorError, RunContext, Value
from rotators.targets.common import matches

HISTORY_LOOKBACK = 10  # versions scanned when a resumed run looks for the one it wrote


class SsmTarget:
    role: ClassVar[str] = "target"
    name: ClassVar[str] = "ssm"
    stages: ClassVar[bool] = False

    def __init__(self, spec: Mapping[str, Any], fields: Mapping[str, str], ctx: RunContext):
        self.ctx = ctx
        self.source = str(spec["source"])
        self.parameter = str(spec["parameter"])
        self.region = spec.get("region")
        self.label = str(spec.get("label") or "keyshift-current")
        self.fields = dict(fields)
        (self.part,) = list(fields)  # one parameter holds one value
        self._client: Any = None

    @property
    def ssm(self) -> Any:
        if self._client is None:
            self._client = self.ctx.aws_client(self.source, "ssm", self.region)
        return self._client

    def where(self) -> str:
        return f"{self.source} parameter {self.parameter}"

    def plan(self, cred: CredentialInfo) -> PartPlan:
        with aws_errors("plan", self.parameter):
            got = self._get(self.parameter)
            if got is None:
                return PartPlan(refused=f"parameter {self.parameter} does not exist")
            warnings = []
            if got["Type"] != "SecureString":
                warnings.append(f"{self.parameter} is a {got['Type']}, stored unencrypted")
            return PartPlan(
                steps=[
                    f"deliver: write version {int(got['Version']) + 1} of {self.parameter} "
                    "(readers by name get it at once)",
                    f"promote: move the label {self.label} to it",
                    "retire: nothing: SSM keeps every version's history (the old value stays "
                    "readable by version number)",
                ],
                needs=[
                    f"ssm:GetParameter, PutParameter, GetParameterHistory, "
                    f"LabelParameterVersion on {self.parameter}"
                ],
                warnings=warnings,
            )

    def read(self) -> Value | None:
        with aws_errors("read", self.parameter):
            got = self._get(self.parameter)
            return self._pick(got)

    def deliver(self, value: Value) -> Handle:
        with aws_errors("deliver", self.parameter):
            current = self._get(self.parameter)
            if current is None:
                raise RotatorError(f"parameter {self.parameter} does not exist")
            found = self.find_delivered({self.part: self.ctx.fingerprint(value[self.part])})
            if found is not None:
                return found[0]  # written before a crash: never a second version
            base = int(current["Version"])
            self.ctx.checkpoint("ssm:read")
            written = self.ssm.put_parameter(
                Name=self.parameter,
                Value=value[self.part].reveal(),
                Type=current["Type"],
                Overwrite=True,
            )
            return {"version": int(written["Version"]), "previous_version": base}

    def read_delivered(self, handle: Handle) -> Value | None:
        with aws_errors("verify", self.parameter):
            return self._pick(self._get(f"{self.parameter}:{int(handle['version'])}"))

    def find_delivered(self, expected: Mapping[str, str]) -> tuple[Handle, Value] | None:
        with aws_errors("resume", self.parameter):
            current = self._get(self.parameter)
            if current is None:
                return None
            latest = int(current["Version"])
            for version in range(latest, max(latest - HISTORY_LOOKBACK, 0), -1):
                value = self._pick(self._get(f"{self.parameter}:{version}"))
                if matches(self.ctx, value, expected):
                    handle = {"version": version, "previous_version": version - 1}
                    return handle, value  # type: ignore[return-value]
            return None

    def read_previous(self, handle: Handle) -> Value | None:
        previous = int(handle.get("previous_version") or 0)
        if not previous:
            return None
        with aws_errors("read", self.parameter):
            return self._pick(self._get(f"{self.parameter}:{previous}"))

    def promote(self, handle: Handle) -> None:
        with aws_errors("promote", self.parameter):
            self.ssm.label_parameter_version(
                Name=self.parameter, ParameterVersion=int(handle["version"]), Labels=[self.label]
            )

    def retire(self, handle: Handle) -> None:
        return None  # SSM cannot delete one version; the history keeps it

    def rollback(self, handle: Handle | None, old: Value | None) -> None:
        with aws_errors("rollback", self.parameter):
            current = self._get(self.parameter)
            if current is None or handle is None:
                return
            version = int(handle.get("version") or 0)
            if int(current["Version"]) != version:
                return  # someone wrote after us, or we never wrote: nothing of ours is current
            previous = int(handle.get("previous_version") or 0)
            restore = (old or {}).get(self.part)
            if restore is None and previous:
                got = self._pick(self._get(f"{self.parameter}:{previous}"))
                restore = (got or {}).get(self.part)
            if restore is None:
                raise RotatorError(f"cannot roll back {self.parameter}: the old value is gone")
            written = self.ssm.put_parameter(
                Name=self.parameter, Value=restore.reveal(), Type=current["Type"], Overwrite=True
            )
            self.ssm.label_parameter_version(
                Name=self.parameter, ParameterVersion=int(written["Version"]), Labels=[self.label]
            )

    def _get(self, name: str) -> dict[str, Any] | None:
        try:
            got = self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        except Exception as exc:
            if error_code(exc) in ("ParameterNotFound", "ParameterVersionNotFound"):
                return None
            raise
        return got

    def _pick(self, got: dict[str, Any] | None) -> Value | None:
        if not got or not got.get("Value"):
            return None
        value = {self.part: self.ctx.keep(str(got["Value"]))}
        got.clear()
        return value
