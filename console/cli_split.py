"""`keyshift incident split ID --credential REF --agent NAME=RESOURCE[,RESOURCE...] --action A`:
one over-privileged IAM key shared by several agents becomes one least-privilege key per agent
(console/incidents/split.py), as an incident's eradicate work.

Exit codes: 0 split, 1 the confirmation was declined, 2 bad usage (not an IAM key, a closed
incident, no aws-iam rotation for its user, an agent whose env file cannot be told), 3 unknown
incident, credential or agent, 4 refused under --read-only, 8 AWS refused a step (the shared
key still works when the failure came before it was touched) or the shared key was not
deactivated and deleted (each agent has its own key by then; the same split can run again).
"""

from __future__ import annotations

import json

import click

from console.cli import Context, _confirm, _out, pass_ctx
from console.cli_incident import incident_group
from console.errors import SourceError, UsageError


@incident_group.command("split")
@click.argument("incident_id")
@click.option("--credential", "ref", required=True, help="The shared IAM access key.")
@click.option("--agent", "agents", multiple=True, required=True, metavar="NAME=RESOURCE,...",
              help="An agent reading the key and the resources (ARNs) it needs; repeat.")
@click.option("--action", "actions", multiple=True, required=True, metavar="ACTION",
              help="An IAM action each agent's new key is allowed (e.g. s3:GetObject); repeat.")
@click.option("--yes", is_flag=True, help="Do not ask; split as shown.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def incident_split(ctx: Context, incident_id: str, ref: str, agents: tuple[str, ...],
                   actions: tuple[str, ...], yes: bool, fmt: str) -> None:
    """Split a shared IAM access key into one least-privilege key per agent: a user
    <user>-<agent> each, allowed exactly --action on exactly its resources, its key delivered
    where the agent read the shared one and checked at STS; then the shared key is deactivated
    and deleted. Shows the plan and asks first unless --yes."""
    from console import incidents
    from console.incidents.split import parse_agents, plan_split, split_key
    from console.refs import resolve_credential

    ctx.require_writable("incident split")
    store = ctx.store
    iid = incidents.resolve_id(store, incident_id)
    if incidents.load(store, iid)["status"] != "open":
        raise UsageError(f"incident {iid} is closed", hint="open one for the shared key")
    cred = resolve_credential(store, ref)
    plan = plan_split(store, ctx.loaded, cred.id, parse_agents(agents), list(actions))
    if fmt == "text":
        for line in plan.lines():
            _out(line)
    _confirm(f"split {plan.key_id} into {len(plan.agents)} key(s)?", yes)
    result = split_key(store, ctx.audit, ctx.loaded, plan, actor=ctx.actor(), incident=iid)
    shared = result["shared"]
    if fmt == "json":
        _out(json.dumps({"incident": iid, **result}, indent=2))
    else:
        for a in result["agents"]:
            _out(f"{a['agent']}: {a['user']} key {a['key_id']} delivered to {a['place']}")
        _out(f"shared key {shared['key_id']}: {shared['deactivated']}, {shared['deleted']}")
        _out("declare in the inventory: " + "; ".join(result["declare"]))
    if not result["ok"]:
        # every agent has its own key, but the shared (stolen) one still works: not a success
        why = shared.get("error") or f"{shared['deactivated']}, {shared['deleted']}"
        raise SourceError(f"split {shared['key_id']}: each agent has its own key, but the shared "
                          f"key was not deactivated and deleted ({why})",
                          hint=f"keyshift revoke {plan.credential}, or run the same split again")
