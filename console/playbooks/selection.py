"""What a playbook touches, in its order: its parameters filled in, then one of the selection
kinds answered from the store (and the inventory). Reads only; a dry run, ``playbook show`` and
the scheduler all call ``select``."""

from __future__ import annotations

import difflib
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from console.errors import NotFoundError, UsageError
from console.inventory import _parse_duration
from console.model import Credential, Sensitivity
from console.playbooks.model import PARAM, Playbook, Selected

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.store import Store

# a parameter is substituted into a filter or a reference: no spaces or quotes that would
# change what the filter says
_SAFE_VALUE = re.compile(r"^[^\s\"'\\]{1,256}$")
_SENSITIVITY_RANK = {s.value: i for i, s in enumerate(Sensitivity)}
# the word for "no sensitivity set": such a credential can still be due (its own max_age_days,
# an expiry), and the schedule rotates it in a job of its own
UNCLASSIFIED = "unclassified"


def resolve_params(pb: Playbook, params: dict[str, Any] | None) -> dict[str, str]:
    """The playbook's parameters with defaults filled in; UsageError for an unknown or
    missing one, or a value that is not one word."""
    given = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
    unknown = sorted(set(given) - set(pb.params))
    if unknown:
        known = ", ".join(f"--{k.replace('_', '-')}" for k in pb.params) or "none"
        raise UsageError(
            f"playbook {pb.name} takes no parameter {', '.join(unknown)}",
            hint=f"its parameters: {known}",
        )
    out: dict[str, str] = {}
    for name, param in pb.params.items():
        value = given.get(name, param.default)
        if value is None:
            if param.required:
                raise UsageError(
                    f"playbook {pb.name} needs --{name.replace('_', '-')}",
                    hint=param.help or f"keyshift playbook show {pb.name}",
                )
            continue
        text = str(value)
        if not _SAFE_VALUE.match(text):
            raise UsageError(
                f"--{name.replace('_', '-')} must be one word (no spaces or quotes)",
                hint="a credential's id or name, an agent's name, an environment",
            )
        out[name] = text
    return out


def _fill(text: str, params: dict[str, str]) -> str:
    return PARAM.sub(lambda m: params[m.group(1)], text)


def select(
    pb: Playbook,
    params: dict[str, Any] | None,
    *,
    store: Store,
    loaded: LoadedInventory | None,
    now: datetime,
) -> list[Selected]:
    """Everything the playbook would act on now, in its order, numbered from 1."""
    values = resolve_params(pb, params)
    sel = pb.selection
    kind = sel.kind
    if kind == "runs":
        return _number(_due_runs(store, now, pb.order))
    reasons: dict[str, str] = {}
    if kind == "credential":
        from console.refs import resolve_credential

        creds = [resolve_credential(store, _fill(sel.credential or "", values))]
    elif kind == "filter":
        from console.query import parse

        creds = list(store.all_credentials(parse(_fill(sel.filter or "", values))))
    elif kind == "agent":
        creds, reasons = _agent_reach(store, loaded, _fill(sel.agent or "", values))
    elif kind == "finding":
        creds, reasons = _finding(store, _fill(sel.finding or "", values), now)
    else:
        creds, reasons = _due(pb, values, store, loaded, now)
    present = [c for c in creds if c.gone_at is None and c.status != "gone"]
    ordered = _ordered(present, pb.order)
    return _number(
        Selected(0, "rotate", c.id, c.name, reason=reasons.get(c.id)) for c in ordered
    )


def _number(items: Any) -> list[Selected]:
    out = []
    for i, item in enumerate(items, 1):
        item.position = i
        out.append(item)
    return out


def _ordered(creds: list[Credential], order: str) -> list[Credential]:
    by_name = sorted(creds, key=lambda c: ((c.name or "").lower(), c.id))
    if order == "oldest":
        # unknown age last: nothing says it is old, and the rest certainly are
        return sorted(by_name, key=lambda c: (
            (c.rotated_at or c.created_at) is None,
            (c.rotated_at or c.created_at or datetime.max).isoformat(),
        ))
    if order == "sensitivity":
        return sorted(by_name, key=lambda c: _SENSITIVITY_RANK.get(c.sensitivity or "", 99))
    return by_name


def _agent_reach(
    store: Store, loaded: LoadedInventory | None, name: str
) -> tuple[list[Credential], dict[str, str]]:
    from console.reach import find_agent

    agent = find_agent(store, loaded, name)
    creds, reasons = [], {}
    for grant in store.grants_for_agent(agent.name):
        if grant.credential_id in reasons:
            continue
        cred = store.get_credential(grant.credential_id)
        if cred is None:
            continue
        creds.append(cred)
        reasons[cred.id] = f"{agent.name} can {','.join(grant.capabilities) or 'reach'} it"
    return creds, reasons


def _finding(store: Store, rule: str, now: datetime) -> tuple[list[Credential], dict[str, str]]:
    from console.findings import RULES
    from console.store.findings import effective_status

    if rule not in RULES:
        close = difflib.get_close_matches(rule, list(RULES), n=3)
        raise NotFoundError(
            f"no finding rule {rule!r}",
            hint=f"did you mean {', '.join(close)}?" if close else "keyshift rules lists them",
        )
    creds, reasons = [], {}
    for row in store.findings():
        cid = row.get("credential_id")
        if row["rule"] != rule or not cid or cid in reasons:
            continue
        if effective_status(row, now) != "open":
            continue
        cred = store.get_credential(cid)
        if cred is not None:
            creds.append(cred)
            reasons[cid] = f"finding {row['id'][:12]}: {row.get('title') or rule}"
    return creds, reasons


def due_threshold(pb: Playbook, values: dict[str, str], loaded: LoadedInventory | None
                  ) -> timedelta:
    if "expiring_within" in values:
        try:
            parsed = _parse_duration(values["expiring_within"])
        except ValueError as exc:
            raise UsageError(f"--expiring-within: {exc}") from None
        assert isinstance(parsed, timedelta)
        return parsed
    if pb.selection.due and pb.selection.due.expiring_within:
        return pb.selection.due.expiring_within
    if loaded is not None:
        return loaded.inventory.schedule.expiry_warning
    return timedelta(days=14)


def due_sensitivities(pb: Playbook, values: dict[str, str]) -> list[str] | None:
    if "sensitivity" in values:
        wanted = [w.strip().lower() for w in values["sensitivity"].split(",") if w.strip()]
        bad = [w for w in wanted if w not in _SENSITIVITY_RANK and w != UNCLASSIFIED]
        if bad or not wanted:
            raise UsageError(
                f"--sensitivity {values['sensitivity']!r} is not one of high, medium, low, "
                f"{UNCLASSIFIED}",
                hint="e.g. --sensitivity high or --sensitivity high,medium "
                f"({UNCLASSIFIED}: credentials with no sensitivity set)",
            )
        return wanted
    if pb.selection.due and pb.selection.due.sensitivity:
        return [s.value for s in pb.selection.due.sensitivity]
    return None


def _due(
    pb: Playbook,
    values: dict[str, str],
    store: Store,
    loaded: LoadedInventory | None,
    now: datetime,
) -> tuple[list[Credential], dict[str, str]]:
    from console.due import due_credentials

    wanted = due_sensitivities(pb, values)
    found = due_credentials(
        store, loaded, now, due_threshold(pb, values, loaded),
        sensitivity=None if wanted is None else [
            None if w == UNCLASSIFIED else w for w in wanted
        ],
    )
    return [d.credential for d in found], {d.id: f"{d.reason}: {d.detail}" for d in found}


def _due_runs(store: Store, now: datetime, order: str) -> list[Selected]:
    from console.model import RunStatus
    from console.rotation.run import parse_time

    rows = []
    for row in store.rotation_runs(status=RunStatus.awaiting_revoke.value, limit=1_000_000):
        due = parse_time(row.get("revoke_after"))
        if due is not None and due > now:
            continue
        rows.append((due, row))
    if order == "name":
        rows.sort(key=lambda r: (r[1]["credential_id"], r[1]["id"]))
    else:
        rows.sort(key=lambda r: ((r[0] or now).isoformat(), r[1]["id"]))
    labels = store.credential_labels([r["credential_id"] for _, r in rows])
    return [
        Selected(
            0, "finish", row["credential_id"],
            (labels.get(row["credential_id"]) or {}).get("name"),
            rotation_run_id=row["id"],
            reason=f"grace over since {due:%Y-%m-%d %H:%M} UTC" if due else "no grace period",
        )
        for due, row in rows
    ]
