"""AWS IAM policy evaluation for one IAM user in one account, as AWS documents it.

- An explicit ``Deny`` that applies (identity policy, group policy, permission boundary)
  wins over every ``Allow``.
- Otherwise the action is allowed when an identity-based policy (the user's managed and
  inline policies and those of its groups) allows it and, when the user has a permission
  boundary, the boundary allows it too.
- A statement applies when its ``Action`` (or every action outside its ``NotAction``) and its
  ``Resource`` (or every resource outside its ``NotResource``) match, with ``*`` and ``?``
  wildcards; actions ignore case, resources do not.
- keyshift does not evaluate ``Condition`` blocks. A decision that depends on one (the only
  allowing statements are conditional, or a conditional deny could apply) is *conditional*:
  shown as such, never dropped and never called certain.

Not evaluated: service control policies, session policies, resource-based policies, and roles
(the inventory refuses ``aws-iam-role`` identities rather than under-report them).
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
            )
        )
    return out


@dataclass(frozen=True)
class Decision:
    allowed: bool
    conditional: bool = False  # a Condition keyshift does not evaluate decides it
    policies: tuple[str, ...] = ()  # the policies whose statements allow it


@dataclass
class UserPolicies:
    """Everything that decides what one IAM user may do."""

    user: str
    arn: str
    policy_names: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)  # identity: user and groups
    boundary: list[Statement] | None = None  # the permission boundary's, when one is set
    unreadable: list[str] = field(default_factory=list)  # policies keyshift could not read

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

    def allowed(self, actions: list[str], resource: str) -> tuple[list[str], list[str]]:
        """(the actions allowed on ``resource``, a conditional one as
        ``conditional:<action>``; the names of the policies that allow them)."""
        out: list[str] = []
        policies: list[str] = []
        for action in actions:
            decision = self.decide(action, resource)
            if not decision.allowed:
                continue
            out.append(f"{CONDITIONAL}:{action}" if decision.conditional else action)
            policies.extend(p for p in decision.policies if p not in policies)
        return out, policies

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
