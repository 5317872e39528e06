"""Deliver to an AWS Secrets Manager secret with its own staging labels.

keyshift runs Secrets Manager's four-step protocol itself: deliver puts the new value as a
version labelled ``AWSPENDING`` (its ClientRequestToken is the run id, so a retried deliver
finds its version instead of adding another), consumers that read ``AWSCURRENT`` do not see it
until promote moves ``AWSCURRENT`` to it (the old version becomes ``AWSPREVIOUS``, as in
AWS's own rotation). Retire leaves ``AWSPREVIOUS`` in place, as AWS does. A secret holding a
JSON object gets the new value at the declared keys, every other key kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from rotators.aws_common import aws_errors, error_code
from rotators.base import CredentialInfo, Handle, PartPlan, RotatorError, RunContext, Value
from rotators.targets.common import matches

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


class SecretsManagerTarget:
    role: ClassVar[str] = "target"
    name: ClassVar[str] = "secretsmanager"
    stages: ClassVar[bool] = True

    def __init__(self, spec: Mapping[str, Any], fields: Mapping[str, str], ctx: RunContext):
        self.ctx = ctx
        self.source = str(spec["source"])
        self.secret = str(spec["secret"])
        self.region = spec.get("region")
        self.fields = dict(fields)  # part -> JSON key ("" = the whole string)
        self._client: Any = None

    @property
    def sm(self) -> Any:
        if self._client is None:
            self._client = self.ctx.aws_client(self.source, "secretsmanager", self.region)
        return self._client

    @property
    def whole(self) -> bool:
        return list(self.fields.values()) == [""]

    def where(self) -> str:
        keys = "" if self.whole else f" ({', '.join(self.fields.values())})"
        return f"{self.source} secret {self.secret}{keys}"

    @property
    def token(self) -> str:
        return self.ctx.run_id  # 32 hex characters: a valid ClientRequestToken

    # --- the protocol --------------------------------------------------------------------

    def plan(self, cred: CredentialInfo) -> PartPlan:
        with aws_errors("plan", self.secret):
            try:
                meta = self.sm.describe_secret(SecretId=self.secret)
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return PartPlan(refused=f"secret {self.secret} does not exist")
                raise
            if meta.get("DeletedDate"):
                return PartPlan(refused=f"secret {self.secret} is scheduled for deletion")
            current = self._string(CURRENT)
            if current is None:
                return PartPlan(refused=f"secret {self.secret} has no AWSCURRENT string value")
            if not self.whole:
                data = self._json(current)
                if data is None:
                    return PartPlan(refused=f"secret {self.secret} does not hold a JSON object")
                missing = [k for k in self.fields.values() if k not in data]
                if missing:
                    return PartPlan(
                        refused=f"secret {self.secret} has no key {', '.join(missing)}"
                    )
            elif self._json(current) is not None and len(self._json(current) or {}) > 1:
                return PartPlan(
                    refused=f"secret {self.secret} holds a JSON object with several keys: "
                    "declare which key the value goes to (json_key or json_keys)"
                )
            warnings = []
            if meta.get("RotationEnabled"):
                warnings.append(
                    f"{self.secret} also has its own rotation schedule in Secrets Manager"
                )
            return PartPlan(
                steps=[
                    f"deliver: put the new value in {self.where()} as a version labelled "
                    "AWSPENDING (ClientRequestToken = run id); AWSCURRENT readers do not see it",
                    "promote: move AWSCURRENT to it (the old version becomes AWSPREVIOUS)",
                    "retire: nothing: AWSPREVIOUS keeps the old version, as AWS's rotation does",
                ],
                needs=[
                    "secretsmanager:DescribeSecret, GetSecretValue, PutSecretValue, "
                    f"UpdateSecretVersionStage on {self.secret}"
                ],
                warnings=warnings,
            )

    def read(self) -> Value | None:
        with aws_errors("read", self.secret):
            return self._pick(self._string(CURRENT))

    def deliver(self, value: Value) -> Handle:
        with aws_errors("deliver", self.secret):
            stages = self._stages()
            previous = self._version_with(stages, CURRENT)
            if self.token in stages:
                staged = self._pick(self._string(version=self.token))
                if matches(self.ctx, staged, self._fps(value)):
                    return {"version": self.token, "previous_version": previous}
                raise RotatorError(
                    f"secret {self.secret} already has a version {self.token} holding another "
                    "value"
                )
            current = self._string(CURRENT)
            text = self._compose(current, value)
            self.sm.put_secret_value(
                SecretId=self.secret,
                ClientRequestToken=self.token,
                SecretString=text,
                VersionStages=[PENDING],
            )
            return {"version": self.token, "previous_version": previous}

    def read_delivered(self, handle: Handle) -> Value | None:
        with aws_errors("verify", self.secret):
            return self._pick(self._string(version=str(handle.get("version") or self.token)))

    def find_delivered(self, expected: Mapping[str, str]) -> tuple[Handle, Value] | None:
        with aws_errors("resume", self.secret):
            stages = self._stages()
            if self.token not in stages:
                return None
            value = self._pick(self._string(version=self.token))
            if not matches(self.ctx, value, expected):
                return None
            previous = self._version_with(stages, CURRENT)
            if previous == self.token:  # promoted already: the old one is AWSPREVIOUS
                previous = self._version_with(stages, PREVIOUS)
            return {"version": self.token, "previous_version": previous}, value  # type: ignore[return-value]

    def read_previous(self, handle: Handle) -> Value | None:
        previous = handle.get("previous_version")
        if not previous:
            return None
        with aws_errors("read", self.secret):
            return self._pick(self._string(version=str(previous)))

    def promote(self, handle: Handle) -> None:
        with aws_errors("promote", self.secret):
            version = str(handle["version"])
            stages = self._stages()
            if version not in stages:
                raise RotatorError(f"version {version} of {self.secret} is gone")
            current = self._version_with(stages, CURRENT)
            if current != version:
                kwargs = {"RemoveFromVersionId": current} if current else {}
                self.sm.update_secret_version_stage(
                    SecretId=self.secret,
                    VersionStage=CURRENT,
                    MoveToVersionId=version,
                    **kwargs,
                )
            self.ctx.checkpoint("secretsmanager:current-moved")
            if PENDING in self._stages().get(version, []):
                self.sm.update_secret_version_stage(
                    SecretId=self.secret, VersionStage=PENDING, RemoveFromVersionId=version
                )

    def retire(self, handle: Handle) -> None:
        return None  # AWSPREVIOUS stays, as AWS's own rotation leaves it

    def rollback(self, handle: Handle | None, old: Value | None) -> None:
        with aws_errors("rollback", self.secret):
            stages = self._stages()
            version = str((handle or {}).get("version") or self.token)
            if version not in stages:
                return  # never delivered here
            if CURRENT in stages[version]:
                previous = (handle or {}).get("previous_version") or self._version_with(
                    stages, PREVIOUS
                )
                if not previous:
                    raise RotatorError(f"cannot roll back {self.secret}: no previous version")
                self.sm.update_secret_version_stage(
                    SecretId=self.secret,
                    VersionStage=CURRENT,
                    MoveToVersionId=str(previous),
                    RemoveFromVersionId=version,
                )
            if PENDING in self._stages().get(version, []):
                self.sm.update_secret_version_stage(
                    SecretId=self.secret, VersionStage=PENDING, RemoveFromVersionId=version
                )

    # --- helpers -------------------------------------------------------------------------

    def _stages(self) -> dict[str, list[str]]:
        meta = self.sm.describe_secret(SecretId=self.secret)
        return {k: list(v) for k, v in (meta.get("VersionIdsToStages") or {}).items()}

    @staticmethod
    def _version_with(stages: dict[str, list[str]], label: str) -> str | None:
        return next((v for v, labels in stages.items() if label in labels), None)

    def _string(self, stage: str | None = None, version: str | None = None) -> str | None:
        kwargs: dict[str, str] = {"SecretId": self.secret}
        if version:
            kwargs["VersionId"] = version
        elif stage:
            kwargs["VersionStage"] = stage
        try:
            got = self.sm.get_secret_value(**kwargs)
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        text = got.get("SecretString")
        got.clear()
        return text if isinstance(text, str) else None

    @staticmethod
    def _json(text: str | None) -> dict[str, Any] | None:
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _pick(self, text: str | None) -> Value | None:
        if text is None:
            return None
        if self.whole:
            return {next(iter(self.fields)): self.ctx.keep(text)} if text else None
        data = self._json(text) or {}
        value = {
            part: self.ctx.keep(str(data[key]))
            for part, key in self.fields.items()
            if isinstance(data.get(key), str) and data[key]
        }
        return value or None

    def _compose(self, current: str | None, value: Value) -> str:
        missing = set(self.fields) - set(value)
        if missing:
            raise RotatorError(f"deliver {self.secret}: no value for {', '.join(missing)}")
        if self.whole:
            return value[next(iter(self.fields))].reveal()
        data = self._json(current) or {}
        data.update({key: value[part].reveal() for part, key in self.fields.items()})
        return json.dumps(data, separators=(",", ":"))

    def _fps(self, value: Value) -> dict[str, str]:
        return {part: self.ctx.fingerprint(v) for part, v in value.items() if part in self.fields}
