"""AWS IAM policy evaluation for one IAM user or role in one account, as AWS documents it.

- An explicit ``Deny`` that applies (identity policy, group policy, permission boundary,
  the resource's own policy) wins over every ``Allow``.
- Otherwise the action is allowed when an identity-based policy (the user's managed and
  inline policies and those of its groups) allows it and, when the user has a permission
  boundary, the boundary allows it too.
- A statement applies when its ``Action`` (or every action outside its ``NotAction``) and its
  ``Resource`` (or every resource outside its ``NotResource``) match, with ``*`` and ``?``
  wildcards; actions ignore case, resources do not.
- keyshift does not evaluate ``Condition`` blocks. A decision that depends on one (the only
  allowing statements are conditional, or a conditional deny could apply) is *conditional*:
  shown as such, never dropped and never called certain.

- Resource-based policies (a secret's), same account: an ``Allow`` that names the principal's
  own ARN (or ``*``) grants by itself, as AWS documents for same-account access; for an IAM
  user a permission boundary does not limit it, for a role it does. An ``Allow`` naming only
  the account delegates to the account's identity policies and adds nothing by itself.
- Role trust policies (``can_assume``): AWS's exception to the rule above. A trust policy that
  names the user's (or role's) ARN lets it assume the role with no identity policy, though its
  boundary must allow ``sts:AssumeRole``; one that names only the account needs an identity
  policy allowing ``sts:AssumeRole`` on the role too. An explicit deny in either wins.

Not evaluated: service control policies, session policies, KMS key policies (see aws.py),
and chains of more than one assume step.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

CONDITIONAL = "conditional"  # the prefix of a capability a condition decides


class PolicyDocumentError(ValueError):
    """A policy document keyshift cannot read: what it grants is unknown."""


@dataclass
class Statement:
    policy: str
    effect: str  # "Allow" | "Deny"
    actions: list[str] = field(default_factory=list)
    not_actions: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    not_resources: list[str] = field(default_factory=list)
    conditional: bool = False
    # resource-based policies only: the AWS principals named ("*" for anyone); None when the
    # statement has no Principal element (an identity policy's)
    principals: list[str] | None = None
    not_principals: list[str] | None = None

    def applies(self, action: str, resource: str) -> bool:
        if self.actions:
            action_ok = any(_action_match(a, action) for a in self.actions)
        else:
            action_ok = not any(_action_match(a, action) for a in self.not_actions)
        if not action_ok:
            return False
        if self.resources:
            return any(_resource_match(r, resource) for r in self.resources)
        if self.not_resources:
            return not any(_resource_match(r, resource) for r in self.not_resources)
        return True  # no Resource element: AWS refuses such identity policies; take "*"

    @property
    def wide(self) -> str | None:
        """This statement in words when it reaches every resource of a service (``*``, a
        whole-service ARN, ``NotResource``) or every action of one (``secretsmanager:*``):
        the shape least privilege rules out. None when it is narrow."""
        every_resource = not self.resources or any(
            r == "*" or re.fullmatch(r"arn:aws[a-z-]*:[a-z0-9-]+:[^:]*:[^:]*:\*", r)
            for r in self.resources
        )
        every_action = not self.actions or any(a == "*" or a.endswith(":*") for a in self.actions)
        if not (every_resource or every_action):
            return None
        actions = ",".join(self.actions) or f"NotAction {','.join(self.not_actions)}"
        resources = ",".join(self.resources) or (
            f"NotResource {','.join(self.not_resources)}" if self.not_resources else "*"
        )
        return f"{actions} on {resources}"

    @property
    def allowed_actions(self) -> list[str]:
        """What the statement allows, in words (for a key's capabilities)."""
        if self.actions:
            return list(self.actions)
        return [f"* except {', '.join(self.not_actions)}"]


def _action_match(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), _glob(pattern.lower()))


def _resource_match(pattern: str, arn: str) -> bool:
    return fnmatch.fnmatchcase(arn, _glob(pattern))


def _glob(pattern: str) -> str:
    # fnmatch's [...] classes do not exist in IAM; escape them so they match literally
    return re.sub(r"([\[\]])", r"[\1]", pattern)


def _listify(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def parse_policy_document(name: str, document: Any) -> list[Statement]:
    """The statements of one policy document (a dict, or JSON text, URL-encoded or not).
    Raises PolicyDocumentError when it cannot be read."""
    if isinstance(document, str):
        try:
            document = json.loads(unquote(document))
        except ValueError:
            raise PolicyDocumentError(f"policy {name!r} is not valid JSON") from None
    if not isinstance(document, dict):
        raise PolicyDocumentError(f"policy {name!r} is not a JSON object")
    raw = document.get("Statement") or []
    out = []
    for st in raw if isinstance(raw, list) else [raw]:
        if not isinstance(st, dict):
            raise PolicyDocumentError(f"policy {name!r} has a statement that is not an object")
        effect = str(st.get("Effect", ""))
        if effect not in ("Allow", "Deny"):
            raise PolicyDocumentError(f"policy {name!r} has an Effect of {effect!r}")
        if "Action" not in st and "NotAction" not in st:
            raise PolicyDocumentError(f"policy {name!r} has a statement with no Action")
        out.append(
            Statement(
                policy=name,
                effect=effect,
                actions=_listify(st.get("Action")),
                not_actions=_listify(st.get("NotAction")),
                resources=_listify(st.get("Resource")),
                not_resources=_listify(st.get("NotResource")),
                conditional=bool(st.get("Condition")),
                principals=_principals(st.get("Principal")),
                not_principals=_principals(st.get("NotPrincipal")),
            )
        )
    return out


def _principals(value: Any) -> list[str] | None:
    """The AWS principals of a Principal element: ``"*"`` and ``{"AWS": "*"}`` both mean
    anyone; service and federated principals are not IAM users or roles, so they drop out."""
    if value is None:
        return None
    if value == "*":
        return ["*"]
    if isinstance(value, dict):
        return _listify(value.get("AWS"))
    return []


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


class _Naming:
    """How a resource-based statement names one principal: directly (its ARN or ``*``), through
    its account (the account's ARN ``...:root`` or bare id), or not at all."""

    NONE, ACCOUNT, DIRECT = 0, 1, 2

    @staticmethod
    def of(st: Statement, principal_arn: str) -> int:
        account = _account_of(principal_arn)
        if st.not_principals is not None:
            named = _Naming._names(st.not_principals, principal_arn, account)
            # NotPrincipal applies to everyone it does not name, and names nobody directly
            return _Naming.NONE if named else _Naming.DIRECT
        if st.principals is None:
            return _Naming.NONE
        return _Naming._names(st.principals, principal_arn, account)

    @staticmethod
    def _names(entries: list[str], principal_arn: str, account: str) -> int:
        if "*" in entries or principal_arn in entries:
            return _Naming.DIRECT
        if account and (account in entries or f"arn:aws:iam::{account}:root" in entries):
            return _Naming.ACCOUNT
        return _Naming.NONE


@dataclass(frozen=True)
class Decision:
    allowed: bool
    conditional: bool = False  # a Condition keyshift does not evaluate decides it
    policies: tuple[str, ...] = ()  # the policies whose statements allow it


def _best(routes: list[Decision], conditional_deny: bool) -> Decision:
    """The surest of the routes that allow (a certain one beats a conditional one); a
    conditional deny that could apply makes any of them conditional."""
    if not routes:
        return Decision(False)
    best = min(routes, key=lambda d: d.conditional)
    return Decision(True, best.conditional or conditional_deny, best.policies)


@dataclass
class UserPolicies:
    """Everything that decides what one IAM user (or role: ``kind="role"``) may do."""

    user: str  # the user's or role's name
    arn: str
    policy_names: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)  # identity: user and groups
    boundary: list[Statement] | None = None  # the permission boundary's, when one is set
    unreadable: list[str] = field(default_factory=list)  # policies keyshift could not read
    kind: str = "user"  # "user" | "role"

    def decide(self, action: str, resource: str) -> Decision:
        boundary = self.boundary or []
        denies = [
            s for s in [*self.statements, *boundary]
            if s.effect == "Deny" and s.applies(action, resource)
        ]
        if any(not s.conditional for s in denies):
            return Decision(False)
        allows = [
            s for s in self.statements if s.effect == "Allow" and s.applies(action, resource)
        ]
        if not allows:
            return Decision(False)
        conditional = bool(denies) or all(s.conditional for s in allows)
        if self.boundary is not None:
            limits = [
                s for s in boundary if s.effect == "Allow" and s.applies(action, resource)
            ]
            if not limits:
                return Decision(False)
            conditional = conditional or all(s.conditional for s in limits)
        policies = tuple(dict.fromkeys(s.policy for s in allows))
        return Decision(True, conditional, policies)

    def decide_with(
        self, action: str, resource: str, resource_policy: list[Statement] | None
    ) -> Decision:
        """``decide`` joined with the resource's own policy (same account): an explicit deny in
        either wins; otherwise an allow from either suffices (see the module's docstring for
        which resource allows count). The resource policy's allow is named ``resource-policy``."""
        if not resource_policy:
            return self.decide(action, resource)
        identity_denies = self._denies(action, resource)
        named = [
            (s, _Naming.of(s, self.arn))
            for s in resource_policy
            if s.applies(action, resource)
        ]
        resource_denies = [s for s, n in named if s.effect == "Deny" and n != _Naming.NONE]
        if any(not s.conditional for s in [*identity_denies, *resource_denies]):
            return Decision(False)
        routes: list[Decision] = []
        own = self.decide(action, resource)
        if own.allowed:
            routes.append(own)
        grants = [s for s, n in named if s.effect == "Allow" and n == _Naming.DIRECT]
        if grants:
            conditional = all(s.conditional for s in grants)
            ok = True
            if self.kind == "role" and self.boundary is not None:
                # a role's boundary limits what a resource policy naming the role grants
                # (a user's does not)
                limits = self._boundary_allows(action, resource)
                ok = bool(limits)
                conditional = conditional or all(s.conditional for s in limits)
            if ok:
                routes.append(Decision(True, conditional, ("resource-policy",)))
        return _best(routes, bool(identity_denies or resource_denies))

    def _denies(self, action: str, resource: str) -> list[Statement]:
        return [
            s for s in [*self.statements, *(self.boundary or [])]
            if s.effect == "Deny" and s.applies(action, resource)
        ]

    def _boundary_allows(self, action: str, resource: str) -> list[Statement]:
        return [
            s for s in self.boundary or [] if s.effect == "Allow" and s.applies(action, resource)
        ]

    def can_assume(self, role_arn: str, trust: list[Statement]) -> Decision:
        """May this principal call sts:AssumeRole on the role with this trust policy (same
        account)? The trust policy's allow is named ``trust``."""
        action = "sts:AssumeRole"
        identity_denies = self._denies(action, role_arn)
        named = [(s, _Naming.of(s, self.arn)) for s in trust if s.applies(action, role_arn)]
        trust_denies = [s for s, n in named if s.effect == "Deny" and n != _Naming.NONE]
        if any(not s.conditional for s in [*identity_denies, *trust_denies]):
            return Decision(False)
        direct = [s for s, n in named if s.effect == "Allow" and n == _Naming.DIRECT]
        by_account = [s for s, n in named if s.effect == "Allow" and n == _Naming.ACCOUNT]
        routes: list[Decision] = []
        if direct:
            # named directly: no identity policy is needed, but a boundary must allow
            conditional = all(s.conditional for s in direct)
            ok = True
            if self.boundary is not None:
                limits = self._boundary_allows(action, role_arn)
                ok = bool(limits)
                conditional = conditional or all(s.conditional for s in limits)
            if ok:
                routes.append(Decision(True, conditional, ("trust",)))
        own = self.decide(action, role_arn)
        if by_account and own.allowed:
            # the account is trusted: the identity's own policies must allow it too
            conditional = own.conditional or all(s.conditional for s in by_account)
            routes.append(Decision(True, conditional, (*own.policies, "trust")))
        return _best(routes, bool(identity_denies or trust_denies))

    def allowed(
        self,
        actions: list[str],
        resource: str,
        resource_policy: list[Statement] | None = None,
    ) -> tuple[list[str], list[str]]:
        """(the actions allowed on ``resource``, a conditional one as
        ``conditional:<action>``; the names of the policies that allow them)."""
        out: list[str] = []
        policies: list[str] = []
        for action in actions:
            decision = self.decide_with(action, resource, resource_policy)
            if not decision.allowed:
                continue
            out.append(f"{CONDITIONAL}:{action}" if decision.conditional else action)
            policies.extend(p for p in decision.policies if p not in policies)
        return out, policies

    def wide_rules(self, actions: list[str], resource: str) -> list[str]:
        """The wide Allow statements (``Statement.wide``) that reach ``resource`` for one of
        ``actions``, in words, for the grant's chain."""
        return list(dict.fromkeys(
            f"{s.policy}: {s.wide}"
            for s in self.statements
            if s.effect == "Allow" and s.wide and any(s.applies(a, resource) for a in actions)
        ))

    def summary(self, limit: int = 12) -> list[str]:
        """Allowed action patterns, for a key's capabilities: as written when few, else per
        service (``s3:*`` or ``ssm:12 actions``) so a managed policy stays readable."""
        seen: list[str] = []
        for st in self.statements:
            if st.effect != "Allow":
                continue
            for action in st.allowed_actions:
                if action not in seen:
                    seen.append(action)
        if len(seen) <= limit:
            return seen
        out = [a for a in seen if a.startswith("* except")]  # NotAction: as written
        by_service: dict[str, list[str]] = {}
        for action in seen:
            if not action.startswith("* except"):
                service, _, name = action.partition(":")
                by_service.setdefault(service, []).append(name)
        for service, names in by_service.items():
            if service == "*" or "*" in names:
                out.append(f"{service}:*" if service != "*" else "*")
            else:
                out.append(f"{service}:{len(names)} action{'s' if len(names) > 1 else ''}")
        if len(out) > limit:
            out = [*out[:limit], f"+{len(out) - limit} more services"]
        return out
