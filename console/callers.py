"""How use evidence names a caller, and which agents of the inventory run as it.

The Vault audit log names an AppRole login ``approle:<role>``, an entity ``entity:<name>``
(else a token's display name); AWS's GetAccessKeyLastUsed names ``iam-user:<name>``;
CloudTrail names the caller by ARN, read here as ``iam-user:<name>`` or, for a role's
session, ``iam-role:<role>``. An agent's identities are named the same way, so one lookup
answers "which agent was that" for the findings, ``keyshift show`` and the console."""

from __future__ import annotations

from collections.abc import Iterable

from console.inventory import Agent, AwsIdentity, VaultIdentity

_VAULT_PREFIX = {"vault-approle": "approle", "vault-entity": "entity"}


def principal(identity: str) -> str:
    """A caller as agents' identities name it: a CloudTrail ARN of an IAM user
    (``arn:aws:iam::<account>:user/[<path>/]<name>``) is ``iam-user:<name>``, of a role's
    session (``arn:aws:sts::<account>:assumed-role/<role>/<session>``) ``iam-role:<role>``.
    Any other identity is itself."""
    if identity.startswith("arn:aws"):
        resource = identity.split(":", 5)[-1]
        if resource.startswith("user/"):
            return f"iam-user:{resource.rsplit('/', 1)[-1]}"
        if resource.startswith("assumed-role/"):
            return f"iam-role:{resource.split('/')[1]}"
    return identity


def agents_by_caller(agents: Iterable[Agent]) -> dict[str, set[str]]:
    """A caller's name (``principal``) -> the agents that run as it."""
    out: dict[str, set[str]] = {}
    for agent in agents:
        for ident in agent.identities:
            key = None
            if isinstance(ident, VaultIdentity) and ident.type in _VAULT_PREFIX:
                key = f"{_VAULT_PREFIX[ident.type]}:{ident.role}"
            elif isinstance(ident, AwsIdentity):
                key = f"iam-{ident.type.removeprefix('aws-iam-')}:{ident.name}"
            if key:
                out.setdefault(key, set()).add(agent.name)
    return out


def arn_account(arn: str | None) -> str | None:
    """The account of an ARN (``arn:aws:<service>:<region>:<account>:...``); None otherwise."""
    if not arn or not arn.startswith("arn:aws"):
        return None
    parts = arn.split(":", 5)
    return parts[4] or None if len(parts) > 4 else None


def foreign(identity: str | None, account: str | None) -> bool:
    """A caller ARN of another account than ``account`` (the credential's): its user or role
    is not the inventory's namesake in the credential's account."""
    theirs = arn_account(identity)
    return bool(theirs and account and theirs != account)


def caller_agents(
    identity: str | None, by_caller: dict[str, set[str]], account: str | None = None
) -> list[str]:
    """The agents that run as the caller ``identity`` names, sorted; none for a caller of
    another account than ``account``, the credential's, when both are known."""
    if not identity or foreign(identity, account):
        return []
    return sorted(by_caller.get(principal(identity), set()))
