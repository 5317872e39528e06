"""A rotation's plan: what will happen, found without changing anything.

``keyshift rotate ID --dry-run --format json`` prints ``RotationPlan.as_dict()``; the TUI's
rotate dialog shows the same. A plan that cannot work says why in ``refused``: everything
that would fail once a run started (a missing secret, a multi-key secret with no declaration,
an IAM user with two keys, a run already in progress) fails here instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rotators.base import PartPlan

# the order steps run in; each part plan says "<step>: what it does"
STEP_ORDER = ("issue", "deliver", "verify", "promote", "revoke", "check", "retire")


@dataclass
class RotationPlan:
    credential: str
    subject: str
    rotator: str  # the issuer plug-in (or a third-party whole rotator)
    issuer: str  # "generated", "provider:openai", "aws-iam", "unknown" (manual), ...
    origin: str  # where what the credential holds is declared
    manual: bool = False  # a person mints and revokes
    targets: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, str]] = field(default_factory=list)
    downtime: str = "none"
    grace_seconds: float = 0.0
    revoke_stages: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        where = ", ".join(t["where"] for t in self.targets) or "no target"
        return f"{self.issuer} -> {where}"


def compose_steps(issuer: PartPlan, targets: list[PartPlan]) -> list[dict[str, str]]:
    """Order the plug-ins' "<step>: text" lines as the engine runs them."""
    lines: list[tuple[str, str]] = []
    for part in (issuer, *targets):
        for line in part.steps:
            step, _, does = line.partition(":")
            lines.append((step.strip(), does.strip()))
    rank = {name: i for i, name in enumerate(STEP_ORDER)}
    ordered = sorted(enumerate(lines), key=lambda item: (rank.get(item[1][0], 99), item[0]))
    return [{"step": step, "does": does} for _, (step, does) in ordered]
