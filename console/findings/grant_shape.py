"""What a grant's capabilities and chain say, shared by the sharing and scope rules."""

from __future__ import annotations


def reaches(capabilities: list[str]) -> bool:
    """A grant that gives the agent the value or its use (not a listing, not unknown)."""
    return any(c not in ("unknown", "list") and not c.startswith("metadata:")
               for c in capabilities)


def rule_of(chain: list[str]) -> str | None:
    return next((step[5:] for step in reversed(chain) if step.startswith("rule:")), None)


def policy_of(chain: list[str]) -> str:
    return next((step[7:] for step in chain if step.startswith("policy:")), "?")


def whole_mount(rule: str) -> bool:
    """``*``, ``<mount>/*``, ``<mount>/data/*``, ``<mount>/metadata/*``: every secret. An AWS
    rule step (``<policy>: <actions> on <resources>``) is only ever a wide statement."""
    if " on " in rule:
        return True
    if not rule.endswith("*"):
        return False
    parts = [p for p in rule[:-1].rstrip("/").split("/") if p]
    return len(parts) <= 1 or (len(parts) == 2 and parts[1] in ("data", "metadata"))


def through_wide_rule(chain: list[str]) -> bool:
    rule = rule_of(chain)
    return rule is not None and whole_mount(rule)
