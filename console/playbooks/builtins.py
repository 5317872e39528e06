"""The playbooks keyshift ships. A user's playbook may not take one of these names."""

from __future__ import annotations

from console.playbooks.model import Playbook

_BUILTINS: list[dict] = [
    {
        "name": "rotate-one",
        "description": "Rotate one credential.",
        "params": {"credential": {"help": "its id, its name, or the end of its id"}},
        "selection": {"credential": "{credential}"},
        "on_failure": "stop",
    },
    {
        "name": "rotate-due",
        "description": "Rotate what is due: past the maximum age for its sensitivity, or "
        "expiring within the threshold (default: the inventory's schedule.expiry_warning).",
        "params": {
            "sensitivity": {"required": False, "help": "only these (high,medium,low)"},
            "expiring_within": {"required": False, "help": "a duration like 14d"},
        },
        "selection": {"due": {}},
        "order": "oldest",
        "concurrency": 4,
        "on_failure": "continue",
    },
    {
        "name": "rotate-agent",
        "description": "Rotate everything an agent can reach (after a leak, or when it is "
        "retired).",
        "params": {"agent": {"help": "the agent's name"}},
        "selection": {"agent": "{agent}"},
        "order": "sensitivity",
        "concurrency": 4,
        "on_failure": "continue",
    },
    {
        "name": "rotate-environment",
        "description": "Rotate every credential of one environment.",
        "params": {"environment": {"help": "dev, staging, prod, ..."}},
        "selection": {"filter": "env:{environment}"},
        "order": "sensitivity",
        "concurrency": 4,
        "on_failure": "continue",
    },
    {
        "name": "finish-due",
        "description": "Revoke the old values whose grace period has passed.",
        "selection": {"runs": "awaiting-revoke-due"},
        "order": "oldest",
        "concurrency": 4,
        "on_failure": "continue",
    },
]


def builtins() -> dict[str, Playbook]:
    out = {}
    for data in _BUILTINS:
        pb = Playbook.model_validate(data).placed("built-in", builtin=True)
        out[pb.name] = pb
    return out


BUILTIN_NAMES: tuple[str, ...] = tuple(d["name"] for d in _BUILTINS)
