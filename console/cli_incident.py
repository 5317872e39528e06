"""`keyshift incident open|ls|show|task|run|hunt|close|export` and `keyshift revoke`:
incidents as records with a scope computed at open and a checklist whose automated tasks
`incident run` does (console/incidents/).

Exit codes: 0 done, 1 an automated task or a revoke failed (it says why), the remove task waits
for a person (run without --remove-found while the hunt found something), or a confirmation was
declined, 2 bad usage (bad --since, a closed incident, a task in the wrong state, close with
open tasks, a kind keyshift cannot revoke), 3 unknown agent, credential, incident, task or
evidence, 4 refused under --read-only, 7 export refused because the audit chain does not
verify, 8 a server refused or could not be reached (revoke).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from console.cli import Context, _confirm, _out, cli, pass_ctx
from console.errors import UsageError


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
@click.option("--owner", default=None,
              help="A departed owner: scope is the agents and credentials they own.")
@click.option("--kind", type=click.Choice(["compromised-agent", "leaked-credential",
                                           "departed-owner"]), default=None,
              help="The template (follows from --agent, --credential or --owner).")
@click.option("--since", default=None,
              help="Review usage from this time: 7d, 12h, or a date (default: 7d).")
@click.option("--title", default=None, help="A title of your own.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_open(ctx: Context, agent: str | None, credential: str | None, owner: str | None,
                  kind: str | None, since: str | None, title: str | None, fmt: str) -> None:
    """Open an incident (exactly one of --agent, --credential or --owner)."""
    from console import incidents

    ctx.require_writable("incident open")
    loaded = ctx.loaded if credential is None else None
    inc = incidents.open_incident(ctx.store, ctx.audit, loaded, actor=ctx.actor(),
                                  agent=agent, credential=credential, owner=owner, kind=kind,
                                  since=since, title=title)
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
    elif scope.get("kind") == "owner":
        _out(f"scope     owner {scope['owner']}: {len(scope['agents'])} agent(s), "
             f"{len(scope['credentials'])} credential(s), {len(scope['usage'])} usage event(s) "
             f"since {scope['since']}")
        for a in scope["agents"]:
            _out(f"          agent {a['name']}")
        for c in scope["credentials"]:
            _out(f"          {c['credential']}  owner {c['owner'] or '-'}")
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
        auto = f" (auto: {t['action']})" if t["mode"] == "auto" else ""
        _out(f"  {t['position']:>2}. [{t['status']}] {t['csf']}  {t['title']}{auto}")
        if t["command"]:
            _out(f"        command: {t['command']}")
        if t["limits"]:
            _out(f"        limits: {t['limits']}")
        if t["owner"]:
            _out(f"        owner {t['owner']}")
        if t["actor"]:
            _out(f"        by {t['actor']}, started {t['started_at'] or '-'}, "
                 f"finished {t['done_at'] or '-'}")
        if t["note"]:
            _out(f"        note: {t['note']}")
        if t["evidence"]:
            _out("        evidence: " + ", ".join(f"{e['kind']}:{e['ref']}"
                                                  for e in t["evidence"]))


@incident_group.command("task")
@click.argument("incident_id")
@click.argument("position", type=int)
@click.argument("action", type=click.Choice(["start", "done", "skip", "assign"]))
@click.option("--owner", default=None,
              help="Who the task is assigned to (with assign, or any action; a task started "
                   "with no owner is owned by whoever starts it).")
@click.option("--note", default=None, help="What was done (replaces the task's note).")
@click.option("--evidence", multiple=True, metavar="KIND:REF",
              help="audit:SEQ, run:RUN_ID, finding:ID or usage:ID; checked to exist "
                   "(repeatable).")
@pass_ctx
def incident_task(ctx: Context, incident_id: str, position: int, action: str,
                  owner: str | None, note: str | None, evidence: tuple[str, ...]) -> None:
    """Start, finish, skip or assign task POSITION of an incident (a person confirms it)."""
    from console import incidents

    ctx.require_writable("incident task")
    store = ctx.store
    iid = incidents.resolve_id(store, incident_id)
    inc = incidents.update_task(store, ctx.audit, iid, position, action, actor=ctx.actor(),
                                note=note, evidence=evidence, owner=owner)
    task = next(t for t in inc["tasks"] if t["position"] == position)
    _out(f"{iid} task {position}: {task['status']}"
         + (f", owner {task['owner']}" if task["owner"] else ""))


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


def _task_refs(values: tuple[str, ...]) -> list[int | str]:
    return [int(v) if v.isdigit() else v for v in values]


@incident_group.command("run")
@click.argument("incident_id")
@click.option("--task", "tasks", multiple=True, metavar="N|STEP",
              help="Only this task (a position or a step name); repeatable.")
@click.option("--skip", multiple=True, metavar="STEP",
              help="Leave this step undone (repeatable).")
@click.option("--remove-found", is_flag=True,
              help="Delete the IAM users, keys and policies the hunt finds (you have checked "
                   "what `incident hunt ID` lists). Without it the remove task waits.")
@click.option("--yes", is_flag=True, help="Do not ask; run the plan as shown.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_run(ctx: Context, incident_id: str, tasks: tuple[str, ...], skip: tuple[str, ...],
                 remove_found: bool, yes: bool, fmt: str) -> None:
    """Run the incident's automated tasks still open, in order: contain (revoke tokens and
    secret-ids by accessor, deactivate access keys), review (use since, the persistence hunt),
    remove (delete what the hunt found: only with --remove-found, since keyshift cannot tell
    who made it; else the task waits, naming the command), eradicate (rotate the scope with
    grace 0), verify (the issuers asked by reference). Shows the plan and asks first unless
    --yes. Exit 1 when a task failed (its note says why) or the remove task waits."""
    from console import incidents
    from console.incidents import runner

    ctx.require_writable("incident run")
    store = ctx.store
    iid = incidents.resolve_id(store, incident_id)
    inc = incidents.load(store, iid)
    if inc["status"] != "open":
        raise UsageError(f"incident {iid} is closed", hint="its tasks no longer change")
    chosen = runner.plan(inc, only=_task_refs(tasks), skip=list(skip))
    if not chosen:
        _out(f"{iid}: no automated task is open" if fmt == "text" else json.dumps(
            {"incident": iid, "tasks": [], "ok": True}, indent=2))
        return
    if fmt == "text":
        _out(f"{iid} will run:")
        for t in chosen:
            extra = ""
            if t["action"] == "remove":
                extra = (" [deletes what the hunt finds: --remove-found]" if remove_found
                         else " [waits: lists the hunt's findings, deletes nothing]")
            _out(f"  {t['position']:>2}. {t['step']} ({t['action']}): {t['title']}{extra}")
    _confirm(f"run {len(chosen)} automated task(s) of {iid}?", yes)

    def show(event: dict) -> None:
        if fmt != "text":
            return
        if event["event"] == "task-start":
            _out(f"task {event['position']} {event['step']}: running")
        elif event["event"] == "task-done":
            _out(f"task {event['position']} {event['step']}: {event['status']}: "
                 f"{event['message']}")
        elif event["event"] == "progress":
            what = event.get("credential") or event.get("finding") or ""
            _out(f"    {what} {event.get('status') or ''}"
                 + (f": {event['message']}" if event.get("message") else ""))

    result = runner.run_incident(store, ctx.audit, ctx.loaded, iid, actor=ctx.actor(),
                                 only=_task_refs(tasks) or None, skip=list(skip),
                                 on_event=show, remove_found=remove_found)
    if fmt == "json":
        _out(json.dumps({"incident": iid, "tasks": result["tasks"], "ok": result["ok"],
                         "waiting": result["waiting"]}, indent=2))
    else:
        failed = [t for t in result["tasks"] if t["status"] == "failed"]
        waiting = [t for t in result["tasks"] if t["status"] == "waiting"]
        _out(f"{iid}: {len(result['tasks']) - len(failed) - len(waiting)} task(s) finished, "
             f"{len(failed)} failed" + (f", {len(waiting)} waiting for a person"
                                        if waiting else ""))
    if not result["ok"]:
        sys.exit(1)  # click.exceptions.Exit is swallowed (0) outside standalone mode


@incident_group.command("hunt")
@click.argument("incident_id")
@click.option("--remove", is_flag=True, help="Delete exactly what the hunt found.")
@click.option("--yes", is_flag=True, help="Do not ask before removing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_hunt(ctx: Context, incident_id: str, remove: bool, yes: bool, fmt: str) -> None:
    """The persistence hunt over the incident's AWS sources: IAM users and access keys that
    exist now and were created after the incident's since (or are unknown to the store), with
    their policies. --remove deletes exactly those, after showing them (never a user the
    inventory declares, nor the identity keyshift signs in as), and records the incident's
    remove task."""
    from console import incidents
    from console.incidents import hunt as hunting
    from console.incidents.runner import aws_sources, incident_since, record_removal
    from console.rotation.context import Clients

    if remove:
        ctx.require_writable("incident hunt --remove")
    store = ctx.store if remove else ctx.reader
    iid = incidents.resolve_id(store, incident_id)
    inc = incidents.load(store, iid)
    loaded = ctx.loaded
    clients = Clients(loaded)
    found = hunting.hunt(store, loaded, clients, aws_sources(loaded, inc["scope"]),
                         incident_since(inc))
    if fmt == "json" and not remove:
        _out(json.dumps(found.as_dict(), indent=2))
    elif fmt == "text":
        for error in found.errors:
            _out(f"error: {error}")
        if not found.findings:
            _out(f"{iid}: nothing found in {', '.join(found.sources) or 'no AWS source'}")
        for f in found.findings:
            _out(f"{f.label}: {f.reason}")
            for what, items in (("key", f.keys), ("attached policy", f.attached_policies),
                                ("inline policy", f.inline_policies), ("group", f.groups)):
                for item in items:
                    _out(f"    {what} {item}")
    if not remove or not found.findings:
        if found.errors:
            sys.exit(1)
        return
    _confirm(f"delete these {len(found.findings)} finding(s) and what they hold?", yes)
    removed = hunting.remove(clients, ctx.audit, loaded, found.findings, actor=ctx.actor(),
                             incident=iid)
    position = record_removal(store, ctx.audit, iid, removed, actor=ctx.actor())
    if fmt == "json":
        _out(json.dumps({**found.as_dict(), "removed": removed, "task": position}, indent=2))
    else:
        for r in removed:
            _out(f"{r['outcome']}: {r['what']} {r['name']}"
                 + (f" ({r['error']})" if r.get("error") else ""))
        if position is not None:
            _out(f"{iid} task {position} (remove): recorded")
    if any(r["outcome"] == "failed" for r in removed) or found.errors:
        sys.exit(1)


@cli.command("revoke")
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def revoke(ctx: Context, ref: str, yes: bool, fmt: str) -> None:
    """Revoke one credential at its issuer, by reference (never by value): a Vault token by
    accessor, an AppRole secret-id by accessor, an IAM access key set Inactive. A kind
    keyshift cannot revoke (a KV secret, a provider key) is refused: rotate it instead."""
    from console.errors import SourceError
    from console.incidents import actions
    from console.refs import resolve_credential
    from console.rotation.context import Clients

    ctx.require_writable("revoke")
    store = ctx.store
    cred = resolve_credential(store, ref)
    if actions.declared_token(store, cred.id):
        _revoke_declared_token(ctx, cred.id, yes, fmt)
        return
    target = actions.ref_from_credential(store, cred.id)
    actions.refuse_unrevocable(target)
    _confirm(f"{actions.REVOCABLE[target.kind]} {target.label} at {target.source}?", yes)
    [done] = actions.contain(Clients(ctx.loaded), ctx.audit, [target], actor=ctx.actor(),
                             action="credential.revoke")
    if fmt == "json":
        _out(json.dumps(done.as_dict(), indent=2))
    elif done.ok:
        _out(f"{done.outcome}: {target.label} ({target.kind}, {target.source})")
    if not done.ok:
        raise SourceError(done.error or f"revoke {target.label} failed")



def _revoke_declared_token(ctx: Context, cid: str, yes: bool, fmt: str) -> None:
    """A declared vault-token rotation's row names a value in a target, not an accessor: its
    tokens are found through the issuer's token role, only those attributable to the rotation
    (a shared role's other tokens are left, and said so)."""
    from console.errors import SourceError
    from console.incidents import actions
    from console.rotation.context import Clients

    clients = Clients(ctx.loaded)
    found = actions.declared_token_targets(ctx.store, ctx.loaded, clients, cid)
    if found.errors:
        raise SourceError(found.errors[0])
    if not found.refs:
        raise UsageError(f"{cid}: no token keyshift can attribute to it: "
                         + "; ".join(found.limits or ["its token role issued none"]),
                         hint=f"rotate it instead: keyshift rotate {cid} --grace 0")
    _confirm(f"revoke-accessor {len(found.refs)} token(s) of {cid}?", yes)
    done = actions.contain(clients, ctx.audit, found.refs, actor=ctx.actor(),
                           action="credential.revoke")
    if fmt == "json":
        _out(json.dumps({"outcomes": [d.as_dict() for d in done], "limits": found.limits},
                        indent=2))
    else:
        for d in done:
            _out(f"{d.outcome}: {d.credential}" + (f" ({d.error})" if d.error else ""))
        for limit in found.limits:
            _out(f"left: {limit}")
    failed = [d for d in done if not d.ok]
    if failed:
        raise SourceError(failed[0].error or f"revoke {failed[0].credential} failed")
