"""Who can reach what: the agents with their reach, one agent's grants, one credential's holders.

One place for the CLI (`agent ls`, `agent show`, `who-can`) and the console's agents view.
Agents come from the inventory and from the grants sync found: an agent that holds grants but
is not in the inventory is listed too, marked so, never dropped.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console.errors import NotFoundError

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.model import Credential, Grant
    from console.store import Store


def identity_text(identity: Any) -> str:
    """``type:detail`` for an inventory identity (``vault-approle:support-bot``)."""
    kind = identity.type
    detail = (
        getattr(identity, "role", None)
        or getattr(identity, "name", None)
        or getattr(identity, "service", None)
        or getattr(identity, "path", None)
        or ""
    )
    return f"{kind}:{detail}" if detail else kind


@dataclass
class AgentSummary:
    name: str
    owner: str | None
    environment: str | None
    identities: list[str] = field(default_factory=list)
    reach: int = 0  # credentials still present it can reach
    used: int = 0  # of those, how many it has been seen using
    in_inventory: bool = True

    @property
    def unused(self) -> int:
        return self.reach - self.used

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "environment": self.environment,
            "identities": self.identities,
            "reach": self.reach,
            "used": self.used,
            "in_inventory": self.in_inventory,
        }


def agents(store: Store, loaded: LoadedInventory | None) -> list[AgentSummary]:
    """Every agent, by name: the inventory's, then any only the grants know."""
    counts = {r["agent"]: r for r in store.agent_reach()}
    out: list[AgentSummary] = []
    for agent in loaded.inventory.agents if loaded is not None else []:
        found = counts.pop(agent.name, None) or {"reach": 0, "used": 0}
        out.append(
            AgentSummary(
                agent.name,
                agent.owner,
                agent.environment,
                [identity_text(i) for i in agent.identities],
                found["reach"],
                found["used"],
            )
        )
    for name, found in counts.items():
        out.append(
            AgentSummary(name, None, None, [], found["reach"], found["used"], in_inventory=False)
        )
    return sorted(out, key=lambda a: a.name.lower())


def find_agent(store: Store, loaded: LoadedInventory | None, name: str) -> AgentSummary:
    every = agents(store, loaded)
    for agent in every:
        if agent.name.lower() == name.lower():
            return agent
    close = difflib.get_close_matches(name, [a.name for a in every], n=3)
    raise NotFoundError(
        f"no agent {name!r}",
        hint=f"did you mean {', '.join(close)}?" if close else "list them with: keyshift agent ls",
    )


def grant_json(grant: Grant, label: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "credential": grant.credential_id,
        "name": label["name"] if label else None,
        "capabilities": grant.capabilities,
        "chain": grant.chain,
        "used": grant.used,
        "gone": bool(label and label["gone"]),
    }


def agent_grants(store: Store, name: str) -> list[dict[str, Any]]:
    """Every grant the agent holds, with the credential's name (a grant naming a credential
    the store does not hold keeps its id, name null)."""
    grants = store.grants_for_agent(name)
    labels = store.credential_labels([g.credential_id for g in grants])
    return [grant_json(g, labels.get(g.credential_id)) for g in grants]


def holders(store: Store, cred: Credential) -> list[dict[str, Any]]:
    """Every agent that can reach the credential, with the chain."""
    return [
        {"agent": g.agent, "capabilities": g.capabilities, "chain": g.chain, "used": g.used}
        for g in store.grants_for_credential(cred.id)
    ]
