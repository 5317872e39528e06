"""`keyshift incident open|ls|show|task|close|export`: incidents as records with a scope
computed at open and a manual checklist (console/incidents/).

Exit codes: 0 done, 2 bad usage (bad --since, a closed incident, a task in the wrong state,
close with open tasks), 3 unknown agent, credential, incident, task or evidence, 4 refused
under --read-only, 7 export refused because the audit chain does not verify.
"""

from __future__ import annotations

import json
from typing import Any

import click

from console.cli import Context, _out, cli, pass_ctx


@cli.group("incident")
def incident_group() -> None:
    """Incidents: open one for a compromised agent or a leaked credential; keyshift computes
    its scope from the store and keeps it as a snapshot, and gives a NIST SP 800-61r3
    checklist (Detect / Respond / Recover, each task tagged with its CSF 2.0 outcome) that a
    person works through. Every change is in the audit log."""


@incident_group.command("open")
@click.option("--agent", default=None, help="A compromised agent: scope is its blast radius.")
@click.option("--credential", default=None,
              help="A leaked credential (id, name or id tail): scope is its holders.")
@click.option("--since", default=None,
              help="Review usage from this time: 7d, 12h, or a date (default: 7d).")
@click.option("--title", default=None, help="A title of your own.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_open(ctx: Context, agent: str | None, credential: str | None, since: str | None,
                  title: str | None, fmt: str) -> None:
    """Open an incident (exactly one of --agent or --credential)."""
    from console import incidents

    ctx.require_writable("incident open")
    loaded = ctx.loaded if agent is not None else None
    inc = incidents.open_incident(ctx.store, ctx.audit, loaded, actor=ctx.actor(),
                                  agent=agent, credential=credential, since=since, title=title)
    if fmt == "json":
        _out(json.dumps(inc, indent=2))
        return
    _out(f"opened {inc['id']}: {inc['title']}")
    _show_text(inc)


@incident_group.command("ls")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_ls(ctx: Context, fmt: str) -> None:
    """Every incident, newest first."""
    rows = ctx.reader.incidents()
    if fmt == "json":
        _out(json.dumps([
            {k: r[k] for k in ("id", "title", "kind", "severity", "status", "actor",
                               "opened_at", "closed_at", "tasks", "tasks_finished")}
            for r in rows], indent=2))
        return
    if not rows:
        _out("no incidents")
        return
    for r in rows:
        _out(f"{r['id']}  {r['status']:<6}  {r['opened_at']}  "
             f"{r['tasks_finished']}/{r['tasks']} tasks  {r['kind']}  {r['title']}")


@incident_group.command("show")
@click.argument("incident_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_show(ctx: Context, incident_id: str, fmt: str) -> None:
    """One incident: its phases and tasks (status, owner, times, notes, evidence) and the
    scope as computed when it was opened."""
    from console import incidents

    store = ctx.reader
    inc = incidents.load(store, incidents.resolve_id(store, incident_id))
    if fmt == "json":
        _out(json.dumps(inc, indent=2))
        return
    _show_text(inc)


def _show_text(inc: dict[str, Any]) -> None:
    _out(f"incident  {inc['id']}  {inc['status']}  severity {inc['severity']}  ({inc['kind']})")
    _out(f"title     {inc['title']}")
    _out(f"opened    {inc['opened_at']} by {inc['actor']}"
         + (f"; closed {inc['closed_at']}" if inc["closed_at"] else ""))
    scope = inc["scope"]
    if scope.get("kind") == "agent":
        _out(f"scope     agent {scope['agent']['name']}: {len(scope['credentials'])} "
             f"credential(s) in reach, {len(scope['usage'])} usage event(s) since "
             f"{scope['since']}")
        owners = {c["credential"]: c["owner"] for c in scope["credentials"]}
        for g in scope["grants"]:
            _out(f"          {g['credential']}  owner {owners.get(g['credential']) or '-'}  "
                 f"via {' -> '.join(g['chain']) or '-'}")
    else:
        c = scope["credential"]
        _out(f"scope     credential {c['credential']} (owner {c['owner'] or '-'}): "
             f"{len(scope['holders'])} holder(s), {len(scope['usage'])} usage event(s) since "
             f"{scope['since']}")
        for h in scope["holders"]:
            _out(f"          held by {h['agent']}  via {' -> '.join(h['chain']) or '-'}")
        for s in scope["same_value"]:
            _out(f"          same value in {s['credential']}")
    phase = None
    for t in inc["tasks"]:
        if t["phase"] != phase:
            phase = t["phase"]
            _out(f"{phase.upper()}")
        _out(f"  {t['position']:>2}. [{t['status']}] {t['csf']}  {t['title']}")
        if t["command"]:
            _out(f"        command: {t['command']}")
        if t["limits"]:
            _out(f"        limits: {t['limits']}")
        if t["owner"]:
            _out(f"        by {t['owner']}, started {t['started_at'] or '-'}, "
                 f"finished {t['done_at'] or '-'}")
        if t["note"]:
            _out(f"        note: {t['note']}")
        if t["evidence"]:
            _out("        evidence: " + ", ".join(f"{e['kind']}:{e['ref']}"
                                                  for e in t["evidence"]))


@incident_group.command("task")
@click.argument("incident_id")
@click.argument("position", type=int)
@click.argument("action", type=click.Choice(["start", "done", "skip"]))
@click.option("--note", default=None, help="What was done (replaces the task's note).")
@click.option("--evidence", multiple=True, metavar="KIND:REF",
              help="audit:SEQ, run:RUN_ID, finding:ID or usage:ID; checked to exist "
                   "(repeatable).")
@pass_ctx
def incident_task(ctx: Context, incident_id: str, position: int, action: str,
                  note: str | None, evidence: tuple[str, ...]) -> None:
    """Start, finish or skip task POSITION of an incident (a person confirms it)."""
    from console import incidents

    ctx.require_writable("incident task")
    store = ctx.store
    iid = incidents.resolve_id(store, incident_id)
    inc = incidents.update_task(store, ctx.audit, iid, position, action, actor=ctx.actor(),
                                note=note, evidence=evidence)
    task = next(t for t in inc["tasks"] if t["position"] == position)
    _out(f"{iid} task {position}: {task['status']}")


@incident_group.command("close")
@click.argument("incident_id")
@click.option("--note", default=None, help="Why it is closed.")
@click.option("--force", is_flag=True, help="Close with open tasks; they are recorded skipped.")
@pass_ctx
def incident_close(ctx: Context, incident_id: str, note: str | None, force: bool) -> None:
    """Close an incident; refused while a task is todo or doing, unless --force."""
    from console import incidents

    ctx.require_writable("incident close")
    store = ctx.store
    iid = incidents.resolve_id(store, incident_id)
    inc = incidents.close_incident(store, ctx.audit, iid, actor=ctx.actor(), note=note,
                                   force=force)
    skipped = inc["tasks"] and [t["position"] for t in inc["tasks"] if t["status"] == "skipped"]
    _out(f"closed {iid}" + (f" (skipped tasks: {', '.join(map(str, skipped))})"
                            if skipped else ""))


@incident_group.command("export")
@click.argument("incident_id")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), required=True)
@pass_ctx
def incident_export(ctx: Context, incident_id: str, fmt: str) -> None:
    """The timeline (UTC), scope, actions, metrics, and the audit chain's anchor now, so the
    export can be checked later with `keyshift audit verify --anchor SEQ:HASH`."""
    from console import incidents

    store = ctx.reader
    data = incidents.export(store, ctx.audit_reader(), incidents.resolve_id(store, incident_id))
    _out(json.dumps(data, indent=2) if fmt == "json" else incidents.export_markdown(data))
