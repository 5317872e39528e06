"""`keyshift agent ls|show` and `keyshift who-can`: reach from the agent's side and from the
credential's. Output and exit codes are a stable API (3: no such agent or credential)."""

from __future__ import annotations

import csv
import json
import sys

import click

from console.audit_query import csv_safe
from console.cli import Context, _out, cli, pass_ctx, plain_console

AGENT_COLUMNS = ["name", "owner", "environment", "reach", "used", "identities", "in_inventory"]


@cli.group("agent")
def agent_group() -> None:
    """The agents: what each can reach and has used."""


@agent_group.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@pass_ctx
def agent_ls(ctx: Context, fmt: str) -> None:
    """Every agent of the inventory (and any agent only a source knows), with how many
    credentials it can reach and how many of those it has been seen using."""
    from console.reach import agents

    found = agents(ctx.reader, ctx.loaded)
    if fmt == "json":
        _out(json.dumps([a.as_json() for a in found], indent=2))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(AGENT_COLUMNS)
        for a in found:
            row = a.as_json()
            row["identities"] = ";".join(a.identities)
            writer.writerow([csv_safe(row[k]) for k in AGENT_COLUMNS])
        return
    from rich.table import Table

    from console.vocabulary import NONE, UNKNOWN

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("AGENT", "OWNER", "ENV", "CAN REACH", "USED", "IDENTITIES"):
        table.add_column(col, no_wrap=True)
    for a in found:
        table.add_row(
            a.name,
            a.owner or (NONE if a.in_inventory else UNKNOWN),
            a.environment or UNKNOWN,
            str(a.reach),
            str(a.used),
            ", ".join(a.identities) if a.in_inventory else "(not in the inventory)",
        )
    plain_console().print(table)
    click.echo(f"{len(found)} agents")


@agent_group.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def agent_show(ctx: Context, name: str, fmt: str) -> None:
    """Every credential the agent can reach: capabilities, the chain that grants it, and
    whether it has been seen using it."""
    from console.reach import agent_grants, find_agent

    agent = find_agent(ctx.reader, ctx.loaded, name)
    grants = agent_grants(ctx.reader, agent.name)
    if fmt == "json":
        _out(json.dumps({**agent.as_json(), "grants": grants}, indent=2))
        return
    _out(f"agent        {agent.name}{'' if agent.in_inventory else '  (not in the inventory)'}")
    _out(f"owner        {agent.owner or '-'}")
    _out(f"environment  {agent.environment or '-'}")
    _out(f"identities   {', '.join(agent.identities) or '-'}")
    _out(f"can reach    {agent.reach} credentials, used {agent.used}")
    for g in grants:
        used = "used" if g["used"] else "no use seen"
        gone = " (gone)" if g["gone"] else ""
        _out(
            f"  {g['name'] or g['credential']}{gone}  {','.join(g['capabilities'])}  "
            f"{' -> '.join(g['chain'])}  ({used})"
        )


@cli.command("who-can")
@click.argument("ref", metavar="CREDENTIAL")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def who_can(ctx: Context, ref: str, fmt: str) -> None:
    """Every agent that can reach the credential, with the chain that grants it.
    CREDENTIAL is its id, its name, or the end of its id."""
    from console.reach import holders
    from console.refs import resolve_credential

    cred = resolve_credential(ctx.reader, ref)
    found = holders(ctx.reader, cred)
    if fmt == "json":
        _out(json.dumps({"credential": cred.id, "name": cred.name, "holders": found}, indent=2))
        return
    _out(f"{cred.name}  ({cred.id})")
    if not found:
        _out("  no agent is known to reach it")
    for h in found:
        used = "used" if h["used"] else "no use seen"
        _out(f"  {h['agent']}  {','.join(h['capabilities'])}  {' -> '.join(h['chain'])}  ({used})")
