"""What a playbook is (pydantic, like the inventory: unknown keys are refused) and what running
one gives back (plain dataclasses, JSON through ``as_dict``: references only, never a value)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from console.inventory import Duration, _parse_duration
from console.model import Sensitivity

NAME = r"^[a-z0-9][a-z0-9._-]*$"
PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")

Order = Literal["name", "oldest", "sensitivity"]
FailurePolicy = Literal["stop", "continue"]
StepStatus = Literal["pending", "running", "done", "failed", "skipped", "manual",
                     "claimed-elsewhere"]
RunOutcome = Literal["completed", "failed", "partial", "stopped", "dry-run"]
SELECTION_KINDS = ("filter", "agent", "credential", "finding", "due", "runs")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _grace(value: object) -> object:
    # 0 is a real choice (revoke at once), which the inventory's Duration refuses
    if value in (0, "0", "0h", "0s", "0m", "0d"):
        return timedelta(0)
    return _parse_duration(value)


Grace = Annotated[timedelta, BeforeValidator(_grace), Field(ge=timedelta(0),
                                                            le=timedelta(days=365))]


class DueSelection(_Model):
    """console/due.py's answer: past the maximum age, or expiring within ``expiring_within``
    (default: the inventory's ``schedule.expiry_warning``)."""

    sensitivity: list[Sensitivity] | None = None
    expiring_within: Duration | None = None


class Selection(_Model):
    """Exactly one way of choosing what the playbook touches. String values may name the
    playbook's parameters as ``{name}``."""

    filter: str | None = None  # keyshift's `ls` grammar
    agent: str | None = None  # everything the agent can reach
    credential: str | None = None  # one credential, by a short reference
    finding: str | None = None  # credentials with an open finding of this rule
    due: DueSelection | None = None
    runs: Literal["awaiting-revoke-due"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Selection:
        given = [k for k in SELECTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            said = f" (it has {', '.join(given)})" if given else ""
            raise ValueError(
                "a selection names exactly one of: filter, agent, credential, finding, due, "
                f"runs{said}"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in SELECTION_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        kind = self.kind
        if kind == "due":
            assert self.due is not None
            parts = []
            if self.due.sensitivity:
                parts.append("sensitivity " + ",".join(s.value for s in self.due.sensitivity))
            if self.due.expiring_within:
                parts.append(f"expiring within {_duration_text(self.due.expiring_within)}")
            return "due" + (f" ({'; '.join(parts)})" if parts else "")
        return f"{kind}: {getattr(self, kind)}"


class Param(_Model):
    required: bool = True
    default: str | None = None
    help: str = ""


class ManualStep(_Model):
    """Text a person reads and confirms (the provider-key checklist, telling a team)."""

    text: str = Field(min_length=1, max_length=2000)
    when: Literal["before", "after"] = "before"


class Playbook(_Model):
    name: str = Field(pattern=NAME, min_length=1, max_length=64)
    description: str = ""
    params: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$")], Param] = Field(
        default_factory=dict
    )
    selection: Selection
    order: Order = "name"
    concurrency: int = Field(default=1, ge=1, le=64)
    grace: Grace | None = None  # None: each credential's declaration, else the policy's
    on_failure: FailurePolicy = "stop"
    manual_steps: list[ManualStep] = Field(default_factory=list)
    # set by whoever made it, never by the YAML: "built-in" or the user's file
    _builtin: bool = PrivateAttr(default=False)
    _source: str | None = PrivateAttr(default=None)

    @property
    def builtin(self) -> bool:
        return self._builtin

    @property
    def source(self) -> str | None:
        return self._source

    def placed(self, source: str, *, builtin: bool = False) -> Playbook:
        self._source, self._builtin = source, builtin
        return self

    def undeclared_params(self) -> list[tuple[str, str]]:
        """(selection field, name) for each ``{name}`` the selection uses and params lacks."""
        out = []
        for kind in ("filter", "agent", "credential", "finding"):
            for name in PARAM.findall(getattr(self.selection, kind) or ""):
                if name not in self.params:
                    out.append((kind, name))
        return out

    @property
    def action(self) -> str:
        return "finish" if self.selection.kind == "runs" else "rotate"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "builtin": self.builtin,
            "source": self.source,
            "params": {k: p.model_dump() for k, p in self.params.items()},
            "selection": self.selection.model_dump(mode="json", exclude_none=True),
            "selection_text": self.selection.describe(),
            "action": self.action,
            "order": self.order,
            "concurrency": self.concurrency,
            "grace_seconds": self.grace.total_seconds() if self.grace is not None else None,
            "on_failure": self.on_failure,
            "manual_steps": [m.model_dump() for m in self.manual_steps],
        }


def _duration_text(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- results ------------------------------------------------------------------------------


@dataclass
class Selected:
    """One thing a playbook will act on, in its order."""

    position: int
    action: str  # rotate | finish
    credential_id: str | None
    name: str | None = None
    rotation_run_id: str | None = None  # what a finish step finishes
    reason: str | None = None  # why it was selected (due's detail, the agent's grant)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepResult:
    position: int
    credential_id: str | None
    action: str  # rotate | finish | manual
    status: str  # done | failed | skipped | manual | claimed-elsewhere
    rotation_run_id: str | None = None
    error: str | None = None  # one line, never a value
    detail: str | None = None  # what happened, one line (the run's status, why skipped)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlaybookResult:
    run_id: str
    playbook: str
    status: str  # completed | failed | partial | stopped | dry-run
    steps: list[StepResult] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for step in self.steps:
            out[step.status] = out.get(step.status, 0) + 1
        return out

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if s.status == "failed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "playbook": self.playbook,
            "status": self.status,
            "params": self.params,
            "counts": self.counts,
            "steps": [s.as_dict() for s in self.steps],
        }


@dataclass
class PlaybookEvent:
    """What a watcher (the CLI's progress bar or JSON lines, the console, the scheduler) is
    told. ``kind``: ``start`` (total known), ``step-start``, ``step`` (a step finished; its
    status), ``progress`` (a rotation's journal step, in ``message``), ``finish``."""

    kind: str
    run_id: str
    playbook: str
    total: int
    position: int | None = None
    credential_id: str | None = None
    action: str | None = None
    status: str | None = None
    rotation_run_id: str | None = None
    error: str | None = None
    message: str | None = None
    counts: dict[str, int] | None = None  # on ``finish``

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
