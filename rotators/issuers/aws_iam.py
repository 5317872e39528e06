"""``aws-iam``: an IAM user's access key, rotated the dual-key way.

IAM allows two access keys per user, so the new key is created while the old one still
works: issue creates it (refused clearly when the user already has two), verify calls STS
GetCallerIdentity signed with the new key, and after the grace period the old key is first
deactivated and, after a second grace period, deleted; a rollback deletes the new key. Which
key is "old" is the one consumers read now (from the targets), or the credential itself when
it is an access key row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rotators.aws_common import aws_errors, error_code
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
from rotators.values import SecretValue

# codes under which STS refuses a key that is wrong, deactivated or deleted
_REFUSED = {"InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "AuthFailure"}


class AwsIamIssuer:
    role: ClassVar[str] = "issuer"
    name: ClassVar[str] = "aws-iam"
    manual: ClassVar[bool] = False
    parts = ("access_key_id", "secret_access_key")
    public_parts: ClassVar[tuple[str, ...]] = ("access_key_id",)

    def __init__(self, spec: Mapping[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.source = str(spec["source"])
        self.user = str(spec["user"])
        self._iam: Any = None

    @property
    def iam(self) -> Any:
        if self._iam is None:
            self._iam = self.ctx.aws_client(self.source, "iam")
        return self._iam

    def _keys(self) -> list[dict[str, Any]]:
        try:
            return list(self.iam.list_access_keys(UserName=self.user)["AccessKeyMetadata"])
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                raise Refused(f"IAM user {self.user} does not exist") from None
            raise

    def plan(self, cred: CredentialInfo) -> PartPlan:
        with aws_errors("plan", f"IAM user {self.user}"):
            keys = self._keys()
        return PartPlan(
            steps=[
                f"issue: create a second access key for {self.user} (the old one keeps working)",
                "verify: STS GetCallerIdentity signed with the new key answers as "
                f"{self.user}",
                "revoke: deactivate the old key after the grace period, delete it after a "
                "second grace period",
            ],
            needs=[
                f"iam:ListAccessKeys, CreateAccessKey, UpdateAccessKey, DeleteAccessKey on "
                f"user {self.user}; sts:GetCallerIdentity"
            ],
            warnings=[f"{self.user} has {len(keys)} access key(s) now"] if len(keys) > 1 else [],
        )

    def revoke_stages(self) -> tuple[str, ...]:
        return ("deactivate", "delete")

    def identify(self, cred: CredentialInfo, old: Value | None) -> Handle:
        with aws_errors("identify", f"IAM user {self.user}"):
            keys = self._keys()
        ids = [k["AccessKeyId"] for k in keys]
        current = None
        if old and "access_key_id" in old:
            current = old["access_key_id"].reveal()
        elif cred.kind == "iam-key":
            current = cred.native_id
        if current and current not in ids:
            raise Refused(
                f"consumers read access key {current}, which is not a key of {self.user}"
            )
        if len(ids) >= 2:
            others = ", ".join(f"{k['AccessKeyId']} ({k['Status']})" for k in keys)
            raise Refused(
                f"{self.user} already has two access keys ({others}): IAM allows no third. "
                "Delete the one no consumer uses, then rotate"
            )
        return {"access_key_id": current, "keys_before": ids}

    def issue(self, cred: CredentialInfo, old: Handle) -> Issued:
        with aws_errors("issue", f"IAM user {self.user}"):
            made = self.iam.create_access_key(UserName=self.user)["AccessKey"]
        key_id = made["AccessKeyId"]
        secret = self.ctx.keep(made.pop("SecretAccessKey"))  # the id is not secret: not kept
        self.ctx.checkpoint("aws-iam:created")
        return Issued(
            {"access_key_id": SecretValue(key_id), "secret_access_key": secret},
            {"access_key_id": key_id},
        )

    def verify(self, cred: CredentialInfo, issued: Issued) -> None:
        verdict = self._who(issued.value)
        if verdict is False:
            # IAM is eventually consistent: a new key may take a few seconds to work
            raise RotatorError("STS does not accept the new key yet", retryable=True)
        if not str(verdict).endswith(f":user/{self.user}"):
            raise VerifyFailed(f"the new key answers as {verdict}, not as user {self.user}")

    def discard(self, cred: CredentialInfo, handle: Handle | None, old: Handle) -> None:
        with aws_errors("rollback", f"IAM user {self.user}"):
            if handle and handle.get("access_key_id"):
                doomed = [handle["access_key_id"]]
            else:
                before = set(old.get("keys_before") or [])
                doomed = [k["AccessKeyId"] for k in self._keys() if k["AccessKeyId"] not in before]
            for key_id in doomed:
                self._delete(key_id)

    def revoke(self, cred: CredentialInfo, stage: str, old: Handle) -> None:
        key_id = old.get("access_key_id")
        if not key_id:
            return
        with aws_errors(stage, f"access key {key_id}"):
            if stage == "deactivate":
                try:
                    self.iam.update_access_key(
                        UserName=self.user, AccessKeyId=key_id, Status="Inactive"
                    )
                except Exception as exc:
                    if error_code(exc) != "NoSuchEntity":  # already deleted: done
                        raise
            else:
                self._delete(key_id)

    def still_valid(self, cred: CredentialInfo, old_value: Value) -> bool | None:
        if "secret_access_key" not in old_value:
            return None
        return self._who(old_value) is not False

    def _who(self, value: Value) -> str | bool:
        """The caller ARN STS answers for ``value``, or False when it refuses the key."""
        sts = self.ctx.aws_client_as(
            self.source, "sts", value["access_key_id"], value["secret_access_key"]
        )
        try:
            with aws_errors("verify", "STS"):
                try:
                    return str(sts.get_caller_identity()["Arn"])
                except Exception as exc:
                    if error_code(exc) in _REFUSED:
                        return False
                    raise
        finally:
            sts.close()

    def _delete(self, key_id: str) -> None:
        try:
            self.iam.delete_access_key(UserName=self.user, AccessKeyId=key_id)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":  # already deleted: deleting is idempotent
                raise
