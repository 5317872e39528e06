"""What a drill scenario is (pydantic, like the inventory: unknown keys are refused).

A scenario names everything by words from four vocabularies kept in Python, one module each
(world parts in world.py, injections in injections.py, responder actions in responders.py,
checks in checks.py); the loader checks every name against them, so a YAML naming an unknown
one is an error at its file:line:col. Credentials are named by the scenario's own short names
(``name:`` of a world part); the runner maps them to the drill store's credential ids.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[a-z0-9][a-z0-9-]{0,31}$"
Option = str | int | float | bool | list[str]
# the incident's steps, as console/incidents/templates.py names them
INCIDENT_STEPS = ("declare", "categorise", "contain", "reassign", "review", "magnitude",
                  "remove", "eradicate", "verify", "notify", "recover", "lessons")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentSpec(_Model):
    name: str = Field(pattern=NAME)
    owner: str = Field(min_length=1, max_length=64)
    environment: Literal["dev", "staging", "prod"] = "prod"


class PartSpec(_Model):
    """One thing the world builds: ``part`` is a world part's name (world.py)."""

    part: str
    name: str = Field(pattern=NAME)
    agent: str | None = None
    owner: str | None = None
    sensitivity: Literal["high", "medium", "low"] = "high"
    options: dict[str, Option] = Field(default_factory=dict)


class World(_Model):
    agents: list[AgentSpec] = Field(default_factory=list, max_length=20)
    parts: list[PartSpec] = Field(min_length=1, max_length=50)


class Step(_Model):
    """An injection (``step``: injections.py), a responder action (``action``:
    responders.py) or a check (``check``: checks.py), with what it acts on."""

    credential: str | None = None
    agent: str | None = None
    owner: str | None = None
    options: dict[str, Option] = Field(default_factory=dict)


class Injection(Step):
    step: str


class Action(Step):
    action: str


class Check(Step):
    check: str


class IncidentSpec(_Model):
    """The incident the responder opens: exactly one of agent, credential or owner (an owner
    opens on the first of their agents when the incident template has no owner kind)."""

    kind: str | None = None
    agent: str | None = None
    credential: str | None = None
    owner: str | None = None


class Respond(_Model):
    incident: IncidentSpec
    # incident step -> the responder's actions for it, in order; a step not named here is
    # confirmed as done by the drill's responder with a note (a manual task), unless it is in
    # ``automated``, which console.incidents.runner.run_incident runs
    steps: dict[str, list[Action]] = Field(default_factory=dict)
    automated: list[str] = Field(default_factory=list)
    # credentials whose consumers are probed in a loop while the responder works
    probes: list[str] = Field(default_factory=list)
    # how the responder finds out: actions run after the injection and before the incident
    # opens (a scan that finds the leak), so TTD runs through them; the declare task carries
    # their note and evidence
    detect: list[Action] = Field(default_factory=list)


class Targets(_Model):
    """Seconds from injection within which each capability counts as performed without
    challenges (twice the target: some challenges; later: major challenges)."""

    ttd: float = Field(default=60, gt=0)
    ttc: float = Field(default=300, gt=0)
    ttr: float = Field(default=900, gt=0)
    ttv: float = Field(default=1200, gt=0)


class Scenario(_Model):
    name: str = Field(pattern=NAME)
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    world: World
    inject: list[Injection] = Field(min_length=1)
    respond: Respond
    checks: list[Check] = Field(min_length=1)
    targets: Targets = Field(default_factory=Targets)
    source: str = Field(default="built-in", exclude=True)  # where it was read from

    def credential_names(self) -> list[str]:
        return [p.name for p in self.world.parts]

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "description": self.description,
                "source": self.source}
