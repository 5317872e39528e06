"""Incidents: a record with a scope computed from the inventory at open, and a checklist.

``open_incident`` computes the scope from the store (an agent's reach with the chains, or a
credential's holders and the other places its value lives; each credential's owner; usage
events since ``since``) and keeps it in the incident as a snapshot: a later sync changes the
store, never an incident's scope. The checklist comes from a template (templates.py); every
task is manual in this version: a person starts, finishes or skips it, with a note and evidence
references that must exist (``audit:SEQ``, ``run:ID``, ``finding:ID``, ``usage:ID``).

Every change is an audit entry (``incident.open``, ``incident.task``, ``incident.close``) with
references only. ``export`` gives the timeline (UTC), the scope, the actions, metrics and the
audit chain's anchor at export time, so the export can be checked later with
``keyshift audit verify --anchor SEQ:HASH``.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from console import reach
from console.errors import NotFoundError, StoreError, UsageError
from console.incidents.templates import PHASES, TEMPLATES

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

DEFAULT_SINCE = timedelta(days=7)
TASK_ACTIONS = ("start", "done", "skip", "assign")
EVIDENCE_KINDS = ("audit", "run", "finding", "usage")
MAX_LISTED = 10
_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str | None, now: datetime) -> datetime:
    """``7d``/``12h``/``30m``/``2w`` back from now, or an ISO date or datetime (UTC if it
    names no zone)."""
    if text is None:
        return now - DEFAULT_SINCE
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a duration nor a date",
                         hint="e.g. --since 7d, --since 12h or --since 2026-11-30") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when > now:
        raise UsageError(f"--since {text!r} is in the future", hint="give a past date")
    return when.astimezone(UTC)


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utc(stored: str | None) -> str | None:
    """A stored time as shown and exported: UTC, spelled with ``Z``."""
    return _iso(datetime.fromisoformat(stored)) if stored else None


# scope ------------------------------------------------------------------------------------


def _cred_entry(row: dict | None, cid: str) -> dict[str, Any]:
    row = row or {}
    return {
        "credential": cid,
        "name": row.get("name"),
        "source": row.get("source"),
        "kind": row.get("kind"),
        "owner": row.get("owner"),
        "environment": row.get("environment"),
        "sensitivity": row.get("sensitivity"),
        "gone": bool(row.get("gone_at")),
        "known": bool(row),
    }


def _usage(store: Store, ids: list[str], since: datetime) -> list[dict[str, Any]]:
    return [
        {"id": u["id"], "credential": u["credential_id"], "at": u["at"],
         "identity": u["identity"], "remote": u["remote"], "operation": u["operation"],
         "evidence": u["evidence"]}
        for u in store.usage_since(ids, since)
    ]


def agent_scope(store: Store, loaded: LoadedInventory | None, name: str,
                since: datetime) -> dict[str, Any]:
    """The blast radius: every credential the agent can reach, with the chain (exactly
    console.reach's grants), each credential's owner, and usage since ``since``."""
    agent = reach.find_agent(store, loaded, name)
    grants = reach.agent_grants(store, agent.name)
    ids = [g["credential"] for g in grants]
    rows = store.incident_credentials(ids)
    return {
        "kind": "agent",
        "agent": {"name": agent.name, "owner": agent.owner, "environment": agent.environment,
                  "identities": agent.identities, "in_inventory": agent.in_inventory},
        "since": _iso(since),
        "grants": grants,
        "credentials": [_cred_entry(rows.get(cid), cid) for cid in dict.fromkeys(ids)],
        "usage": _usage(store, ids, since),
    }


def credential_scope(store: Store, ref: str, since: datetime) -> dict[str, Any]:
    from console.refs import resolve_credential

    cred = resolve_credential(store, ref)
    elsewhere = store.same_value_elsewhere(cred.id)
    rows = store.incident_credentials([cred.id, *elsewhere])
    return {
        "kind": "credential",
        "credential": _cred_entry(rows.get(cred.id), cred.id),
        "since": _iso(since),
        "holders": reach.holders(store, cred),
        "same_value": [_cred_entry(rows.get(cid), cid) for cid in elsewhere],
        "usage": _usage(store, [cred.id], since),
    }


def owner_scope(store: Store, loaded: LoadedInventory | None, owner: str,
                since: datetime) -> dict[str, Any]:
    """What a departed owner could read: the agents they own (each with its reach) and the
    credentials the store says they own, with usage since ``since``."""
    name = owner.strip()
    if not name:
        raise UsageError("--owner needs a name", hint="e.g. --owner alice")
    owned = [a for a in reach.agents(store, loaded)
             if (a.owner or "").lower() == name.lower()]
    grants = [{**g, "agent": a.name} for a in owned for g in reach.agent_grants(store, a.name)]
    ids = list(dict.fromkeys([*store.credentials_owned_by(name),
                              *(g["credential"] for g in grants)]))
    if not owned and not ids:
        raise NotFoundError(f"nobody named {owner!r} owns an agent or a credential",
                            hint="owners are in keyshift agent ls and keyshift ls")
    rows = store.incident_credentials(ids)
    # the owner as the inventory or the store spells it, whatever case was typed
    spelled = [a.owner for a in owned] + [r.get("owner") for r in rows.values()]
    name = next((o for o in spelled if o and o.lower() == name.lower()), name)
    return {
        "kind": "owner",
        "owner": name,
        "agents": [{"name": a.name, "owner": a.owner, "environment": a.environment,
                    "identities": a.identities, "in_inventory": a.in_inventory}
                   for a in owned],
        "since": _iso(since),
        "grants": grants,
        "credentials": [_cred_entry(rows.get(cid), cid) for cid in ids],
        "usage": _usage(store, ids, since),
    }


def scope_credentials(scope: dict[str, Any]) -> list[dict[str, Any]]:
    if scope.get("kind") == "credential":
        return [scope["credential"], *scope["same_value"]]
    return list(scope.get("credentials", []))


def _owners(scope: dict[str, Any]) -> list[str]:
    owners = {c["owner"] for c in scope_credentials(scope) if c.get("owner")}
    if scope["kind"] == "agent" and scope["agent"].get("owner"):
        owners.add(scope["agent"]["owner"])
    if scope["kind"] == "owner":
        owners.discard(scope["owner"])
    return sorted(owners)


# open -------------------------------------------------------------------------------------


def open_incident(
    store: Store,
    audit: AuditLog,
    loaded: LoadedInventory | None,
    *,
    actor: str,
    agent: str | None = None,
    credential: str | None = None,
    kind: str | None = None,
    owner: str | None = None,
    since: str | None = None,
    title: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Open an incident. The template follows from what is given (``--agent``: compromised
    agent, ``--credential``: leaked credential, ``--owner``: departed owner); ``kind`` names it
    explicitly and must fit."""
    given = [n for n, v in (("--agent", agent), ("--credential", credential),
                            ("--owner", owner)) if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --agent NAME, --credential REF or --owner NAME",
                         hint="e.g. keyshift incident open --agent support-bot")
    wants = {"--agent": "compromised-agent", "--credential": "leaked-credential",
             "--owner": "departed-owner"}[given[0]]
    if kind is not None and kind not in TEMPLATES:
        raise UsageError(f"no incident kind {kind!r}", hint="one of " + ", ".join(TEMPLATES))
    if kind is not None and kind != wants:
        raise UsageError(f"--kind {kind} does not fit {given[0]}",
                         hint=f"{given[0]} opens a {wants} incident")
    kind = wants
    now = now or datetime.now(UTC)
    when = parse_since(since, now)
    fill = {"agent": "-", "credential": "-", "owner": "-",
            "inventory": str(loaded.path) if loaded is not None else "the inventory"}
    if agent is not None:
        scope = agent_scope(store, loaded, agent, when)
        count = len(scope["credentials"])
        fill["agent"] = scope["agent"]["name"]
    elif credential is not None:
        scope = credential_scope(store, credential, when)
        count = len(scope["holders"])
        fill["credential"] = scope["credential"]["credential"]
    else:
        scope = owner_scope(store, loaded, owner or "", when)
        count = len(scope["credentials"])
        fill["owner"] = scope["owner"]
    template = TEMPLATES[kind]
    owners = _owners(scope)
    fill |= {"since": scope["since"], "count": str(count),
             "owners": ", ".join(owners) if owners else "(none recorded)"}
    tasks = []
    for n, t in enumerate(template["tasks"], start=1):
        tasks.append({
            "position": n, "phase": t["phase"], "step": t["step"], "csf": t["csf"],
            "title": t["title"].format(**fill),
            "command": t["command"].format(**fill) if t.get("command") else None,
            "note": t["note"].format(**fill) if t.get("note") else None,
            "mode": "auto" if t.get("auto") else "manual", "action": t.get("auto"),
        })
    detail = {"template": kind, "since": scope["since"], "scope": scope,
              "tasks": [{k: t[k] for k in ("position", "step", "csf", "command", "note", "mode",
                                            "action")}
                        for t in tasks]}
    name = title or template["title"].format(**fill)
    for _ in range(5):
        incident_id = "INC-" + secrets.token_hex(3).upper()
        try:
            store.create_incident(incident_id, title=name, kind=kind,
                                  severity=template["severity"], actor=actor, opened_at=now,
                                  detail=detail, tasks=tasks)
            break
        except StoreError as exc:
            if "is taken" not in exc.message:
                raise
    else:  # pragma: no cover - five collisions in 16M ids
        raise StoreError("could not draw a free incident id")
    audit.append(actor, "incident.open", incident_id, {
        "kind": kind, "since": scope["since"], "agent": fill["agent"],
        "credential": fill["credential"], "owner": fill["owner"],
        "credentials": len(scope_credentials(scope)), "usage_events": len(scope["usage"]),
    })
    return load(store, incident_id)


# read -------------------------------------------------------------------------------------


def resolve_id(store: Store, ref: str) -> str:
    """A full id, or a unique prefix, with or without ``INC-``, any case."""
    from console.refs import resolve_prefixed

    return resolve_prefixed(ref, "INC-", store.find_incidents, "incident",
                            "keyshift incident ls")


def load(store: Store, incident_id: str) -> dict[str, Any]:
    inc = store.get_incident(incident_id)
    if inc is None:
        raise NotFoundError(f"no incident {incident_id!r}",
                            hint="list them with: keyshift incident ls")
    meta = {t["position"]: t for t in inc["detail"].get("tasks", [])}
    tasks = []
    for row in store.incident_tasks(incident_id):
        extra = meta.get(row["position"], {})
        tasks.append({
            "position": row["position"], "phase": row["phase"], "step": extra.get("step"),
            "csf": extra.get("csf"), "title": row["title"], "mode": extra.get("mode", "manual"),
            "action": extra.get("action"),
            "command": extra.get("command"), "limits": extra.get("note"),
            "status": row["status"], "owner": row.get("owner"), "actor": row["actor"],
            "started_at": _utc(row["started_at"]), "done_at": _utc(row["done_at"]),
            "note": row["note"], "evidence": row["evidence"],
            "rotation_run_id": row["rotation_run_id"],
        })
    detail = inc["detail"]
    return {
        "id": inc["id"], "title": inc["title"], "kind": inc["kind"],
        "severity": inc["severity"], "status": inc["status"], "actor": inc["actor"],
        "opened_at": _utc(inc["opened_at"]), "closed_at": _utc(inc["closed_at"]),
        "since": detail.get("since"), "close_note": detail.get("close_note"),
        "tasks": tasks, "scope": detail.get("scope", {}),
    }


# tasks ------------------------------------------------------------------------------------


def _check_evidence(store: Store, ref: str) -> dict[str, str]:
    kind, sep, value = ref.partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or kind not in EVIDENCE_KINDS or not value:
        raise UsageError(f"evidence {ref!r} is not KIND:REF",
                         hint="KIND is one of audit, run, finding, usage: e.g. audit:42")
    if kind in ("audit", "usage"):
        if not value.isdigit():
            raise UsageError(f"evidence {ref!r}: {kind} takes a number", hint=f"e.g. {kind}:42")
        exists = (store.audit_seq_exists(int(value)) if kind == "audit"
                  else store.usage_event_exists(int(value)))
        if not exists:
            raise NotFoundError(f"evidence {ref!r}: no {kind} entry {value}",
                                hint="keyshift audit tail" if kind == "audit"
                                else "usage ids are in keyshift incident show --format json")
        return {"kind": kind, "ref": value}
    if kind == "finding":
        if store.get_finding(value) is None:
            raise NotFoundError(f"evidence {ref!r}: no finding {value!r}",
                                hint="list them with: keyshift findings")
        return {"kind": kind, "ref": value}
    if store.get_rotation_run(value) or store.get_playbook_run(value):
        return {"kind": "run", "ref": value}
    runs = store.find_rotation_runs(value, limit=2)
    if len(runs) == 1:
        return {"kind": "run", "ref": runs[0]["id"]}
    raise NotFoundError(f"evidence {ref!r}: no rotation or playbook run {value!r}"
                        + (" (the prefix is ambiguous)" if runs else ""),
                        hint="list rotation runs with: keyshift runs")


def update_task(
    store: Store,
    audit: AuditLog,
    incident_id: str,
    position: int,
    action: str,
    *,
    actor: str,
    note: str | None = None,
    evidence: tuple[str, ...] | list[str] = (),
    owner: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``start`` (todo -> doing), ``done`` or ``skip`` (todo/doing -> done/skipped), ``assign``
    (an open task's owner, status unchanged). A note replaces the task's note; evidence
    references are added, each checked to exist. ``owner`` assigns the task with any action;
    a task started with no owner yet is owned by whoever starts it."""
    if action not in TASK_ACTIONS:
        raise UsageError(f"unknown task action {action!r}", hint="start, done, skip or assign")
    if owner is not None and not owner.strip():
        raise UsageError("--owner is empty", hint="give the person or team, e.g. --owner alice")
    if action == "assign" and owner is None:
        raise UsageError("assign needs --owner", hint="e.g. keyshift incident task ID N assign "
                                                      "--owner alice")
    inc = load(store, incident_id)
    if inc["status"] != "open":
        raise UsageError(f"incident {incident_id} is closed", hint="its tasks no longer change")
    task = next((t for t in inc["tasks"] if t["position"] == position), None)
    if task is None:
        raise NotFoundError(f"incident {incident_id} has no task {position}",
                            hint=f"tasks are 1..{len(inc['tasks'])}")
    allowed = {"start": ("todo",), "done": ("todo", "doing"), "skip": ("todo", "doing"),
               "assign": ("todo", "doing")}
    if task["status"] not in allowed[action]:
        raise UsageError(f"task {position} is {task['status']}; cannot {action} it",
                         hint=f"{action} applies to a task that is "
                              f"{' or '.join(allowed[action])}")
    checked = [_check_evidence(store, e) for e in evidence]
    now = now or datetime.now(UTC)
    merged = task["evidence"] + [e for e in checked if e not in task["evidence"]]
    fields: dict[str, Any] = {"actor": actor, "evidence": merged}
    if note is not None:
        fields["note"] = note
    if owner is not None:
        fields["owner"] = owner.strip()
    elif action == "start" and not task.get("owner"):
        fields["owner"] = actor
    if action == "assign":
        fields["status"] = task["status"]
    elif action == "start":
        fields |= {"status": "doing", "started_at": now}
    else:
        fields |= {"status": "done" if action == "done" else "skipped", "done_at": now}
        if task["started_at"] is None:
            fields["started_at"] = now
    run = next((e["ref"] for e in checked
                if e["kind"] == "run" and store.get_rotation_run(e["ref"])), None)
    if run and task["rotation_run_id"] is None:
        fields["rotation_run_id"] = run
    store.update_incident_task(incident_id, position, **fields)
    audit.append(actor, "incident.task", incident_id, {
        "task": position, "step": task["step"], "action": action,
        "status": fields["status"], "evidence": [f"{e['kind']}:{e['ref']}" for e in checked],
        "noted": note is not None, "owner": fields.get("owner"),
    })
    return load(store, incident_id)


def close_incident(
    store: Store,
    audit: AuditLog,
    incident_id: str,
    *,
    actor: str,
    note: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Close; refused while a task is todo or doing unless ``force``, which records each of
    them as skipped."""
    inc = load(store, incident_id)
    if inc["status"] != "open":
        raise UsageError(f"incident {incident_id} is already closed")
    open_tasks = [t["position"] for t in inc["tasks"] if t["status"] in ("todo", "doing")]
    if open_tasks and not force:
        raise UsageError(
            f"incident {incident_id} has {len(open_tasks)} open task(s): "
            f"{', '.join(map(str, open_tasks))}",
            hint="finish or skip them, or close with --force (records them as skipped)",
        )
    now = now or datetime.now(UTC)
    detail = dict(store.get_incident(incident_id)["detail"])  # type: ignore[index]
    detail["close_note"] = note
    detail["forced_skips"] = open_tasks
    store.close_incident(incident_id, now, detail, open_tasks, actor)
    audit.append(actor, "incident.close", incident_id,
                 {"forced": bool(open_tasks), "skipped": open_tasks, "noted": note is not None})
    return load(store, incident_id)


# export -----------------------------------------------------------------------------------


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _seconds(start: str, end: str | None) -> float | None:
    a, b = _parse(start), _parse(end)
    return None if a is None or b is None else round((b - a).total_seconds(), 3)


def metrics(inc: dict[str, Any]) -> dict[str, Any]:
    """Seconds from open to the last done task of each step and phase (None until every task
    of it is done; a skipped task does not count as done)."""
    def upto(tasks: list[dict]) -> float | None:
        if not tasks or any(t["status"] != "done" for t in tasks):
            return None
        return _seconds(inc["opened_at"], max(t["done_at"] for t in tasks))

    by_step = {s: [t for t in inc["tasks"] if t["step"] == s]
               for s in ("contain", "eradicate", "verify")}
    return {
        "time_to_contain_s": upto(by_step["contain"]),
        "time_to_eradicate_s": upto(by_step["eradicate"]),
        "time_to_verify_s": upto(by_step["verify"]),
        "phases": {p: upto([t for t in inc["tasks"] if t["phase"] == p]) for p in PHASES},
        "tasks_done": sum(t["status"] == "done" for t in inc["tasks"]),
        "tasks_skipped": sum(t["status"] == "skipped" for t in inc["tasks"]),
        "tasks": len(inc["tasks"]),
        "time_open_s": _seconds(inc["opened_at"], inc["closed_at"]),
    }


def timeline(inc: dict[str, Any]) -> list[dict[str, Any]]:
    events = [{"at": inc["opened_at"], "event": "opened", "by": inc["actor"]}]
    for t in inc["tasks"]:
        if t["started_at"] and (t["status"] == "doing" or t["started_at"] != t["done_at"]):
            events.append({"at": t["started_at"], "event": f"task {t['position']} started",
                           "task": t["position"], "by": t["owner"]})
        if t["done_at"]:
            events.append({"at": t["done_at"], "event": f"task {t['position']} {t['status']}",
                           "task": t["position"], "by": t["owner"]})
    if inc["closed_at"]:
        events.append({"at": inc["closed_at"], "event": "closed"})
    return sorted(events, key=lambda e: e["at"])


def export(store: Store, audit: AuditLog, incident_id: str) -> dict[str, Any]:
    inc = load(store, incident_id)
    anchor = audit.anchor()
    return {
        "incident": {k: inc[k] for k in ("id", "title", "kind", "severity", "status", "actor",
                                         "opened_at", "closed_at", "since", "close_note")},
        "timeline": timeline(inc),
        "tasks": inc["tasks"],
        "scope": inc["scope"],
        "metrics": metrics(inc),
        "audit_anchor": anchor.to_json(),
        "verify_with": f"keyshift audit verify --anchor {anchor.text}",
        "exported_at": _iso(datetime.now(UTC)),
    }


def _md_secs(value: float | None) -> str:
    if value is None:
        return "-"
    return str(timedelta(seconds=round(value)))


def export_markdown(data: dict[str, Any]) -> str:
    inc, m, scope = data["incident"], data["metrics"], data["scope"]
    out = [f"# {inc['id']}: {inc['title']}", "",
           f"- kind: {inc['kind']}, severity: {inc['severity']}, status: {inc['status']}",
           f"- opened {inc['opened_at']} by {inc['actor']}; closed {inc['closed_at'] or '-'}",
           f"- activity reviewed since {inc['since']}", "", "## Timeline (UTC)", ""]
    out += [f"- {e['at']}  {e['event']}" + (f" ({e['by']})" if e.get("by") else "")
            for e in data["timeline"]]
    out += ["", "## Scope", ""]
    if scope.get("kind") == "agent":
        a = scope["agent"]
        out.append(f"Agent {a['name']} (owner {a['owner'] or '-'}; identities "
                   f"{', '.join(a['identities']) or '-'}) can reach "
                   f"{len(scope['credentials'])} credential(s):")
        owners = {c["credential"]: c["owner"] for c in scope["credentials"]}
        out += [f"- {g['credential']}  owner {owners.get(g['credential']) or '-'}  "
                f"via {' -> '.join(g['chain']) or '-'}  {', '.join(g['capabilities'])}"
                for g in scope["grants"]]
    elif scope.get("kind") == "owner":
        out.append(f"Owner {scope['owner']} owns {len(scope['agents'])} agent(s) "
                   f"({', '.join(a['name'] for a in scope['agents']) or '-'}); "
                   f"{len(scope['credentials'])} credential(s) in scope:")
        out += [f"- {c['credential']}  owner {c['owner'] or '-'}" for c in scope["credentials"]]
    elif scope.get("kind") == "credential":
        c = scope["credential"]
        out.append(f"Credential {c['credential']} (owner {c['owner'] or '-'}), held by "
                   f"{len(scope['holders'])} agent(s):")
        out += [f"- {h['agent']}  via {' -> '.join(h['chain']) or '-'}"
                for h in scope["holders"]]
        out.append(f"Same value also in: {', '.join(s['credential'] for s in scope['same_value'])}"
                   if scope["same_value"] else "Same value also in: nowhere else known")
    out += ["", f"Usage events since {scope.get('since')}: {len(scope.get('usage', []))}"]
    out += [f"- usage:{u['id']}  {u['at']}  {u['credential']}  {u['identity'] or '-'}  "
            f"{u['operation'] or '-'}  ({u['evidence']})" for u in scope.get("usage", [])]
    out += ["", "## Actions", ""]
    for t in data["tasks"]:
        out.append(f"{t['position']}. [{t['status']}] {t['phase']} / {t['csf']}: {t['title']}")
        if t["owner"]:
            out.append(f"   - owner {t['owner']}")
        if t["actor"]:
            out.append(f"   - by {t['actor']}; started {t['started_at'] or '-'}; "
                       f"finished {t['done_at'] or '-'}")
        if t["note"]:
            out.append(f"   - note: {t['note']}")
        if t["evidence"]:
            out.append("   - evidence: " + ", ".join(f"{e['kind']}:{e['ref']}"
                                                     for e in t["evidence"]))
    out += ["", "## Metrics", "",
            f"- time to contain: {_md_secs(m['time_to_contain_s'])}",
            f"- time to eradicate: {_md_secs(m['time_to_eradicate_s'])}",
            f"- time to verify: {_md_secs(m['time_to_verify_s'])}",
            f"- tasks done {m['tasks_done']} / {m['tasks']}, skipped {m['tasks_skipped']}",
            "", "## Audit anchor", "",
            f"- anchor `{data['audit_anchor']['anchor']}` at {data['audit_anchor']['at']}",
            f"- check later with: `{data['verify_with']}`", ""]
    return "\n".join(out)
