"""`keyshift findings`, `keyshift finding show|accept` and `keyshift rules`: what breaks
policy. Output and exit codes are a stable API: 0 fine, 1 when ``--fail-on`` finds an open
finding at or above its severity, 2 bad usage, 3 no such finding."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime

import click

from console.audit_query import csv_safe
from console.cli import Context, _out, cli, pass_ctx, plain_console
from console.findings import RULES, SEVERITIES, SEVERITY_RANK
from console.findings.accept import accept, find_finding
from console.findings.records import FIELDS, JSON_FIELDS, as_json
from console.findings.sarif import to_sarif
from console.listfilter import list_filter

SEVERITY = click.Choice(list(SEVERITIES))


def _order(found: dict) -> tuple:
    return (-SEVERITY_RANK.get(found["severity"], -1), found["rule"], found["credential"] or "",
            found["agent"] or "", found["id"])


@cli.command("findings")
@click.argument("filter_words", nargs=-1, metavar="[FILTER]...")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "sarif"]),
              default="table")
@click.option("--all", "show_all", is_flag=True, help="Resolved findings too.")
@click.option("--fail-on", type=SEVERITY, default=None,
              help="Exit 1 when an open finding shown is at or above this severity (CI).")
@pass_ctx
def findings_cmd(
    ctx: Context, filter_words: tuple[str, ...], fmt: str, show_all: bool, fail_on: str | None
) -> None:
    """What breaks policy, as the last sync found it. FILTER words (all must hold): a word
    matches any field; field:value is exact (rule:scope.*, severity:high, status:accepted,
    agent:support-bot); field~text a substring; ! inverts one."""
    now = datetime.now(UTC)
    keep = list_filter(" ".join(filter_words), FIELDS)
    rows = [as_json(r, now) for r in ctx.reader.findings(include_resolved=show_all)]
    shown = sorted((r for r in rows if keep({**r, "credential": r["credential"] or ""})),
                   key=_order)
    if fmt == "json":
        _out(json.dumps(shown, indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(JSON_FIELDS)
        for r in shown:
            writer.writerow([csv_safe(r[k]) for k in JSON_FIELDS])
    elif fmt == "sarif":
        _out(json.dumps(to_sarif(shown, RULES), indent=2))
    else:
        _table(shown)
    if fail_on is not None:
        floor = SEVERITY_RANK[fail_on]
        if any(r["status"] == "open" and SEVERITY_RANK.get(r["severity"], -1) >= floor
               for r in shown):
            sys.exit(1)


def _table(shown: list[dict]) -> None:
    from rich.table import Table

    if not shown:
        _out("no findings")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ID", "SEVERITY", "RULE", "STATUS", "SUBJECT", "FINDING"):
        table.add_column(col, no_wrap=col != "FINDING")
    for r in shown:
        subject = r["credential"] or (f"agent {r['agent']}" if r["agent"] else "-")
        table.add_row(r["id"], r["severity"], r["rule"], r["status"], subject, r["title"])
    plain_console().print(table)
    counts = {s: sum(1 for r in shown if r["severity"] == s and r["status"] == "open")
              for s in SEVERITIES}
    _out("open: " + (", ".join(f"{s} {n}" for s, n in counts.items() if n) or "none"))


@cli.group("finding")
def finding_group() -> None:
    """One finding: show it, or accept it for a while."""


@finding_group.command("show")
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def finding_show(ctx: Context, ref: str, fmt: str) -> None:
    """One finding by id (or a unique start of one), with its rule's rationale."""
    row = as_json(find_finding(ctx.reader, ref), datetime.now(UTC))
    rule = RULES.get(row["rule"])
    if fmt == "json":
        _out(json.dumps({**row, "rationale": rule.rationale if rule else None}, indent=2))
        return
    for key in JSON_FIELDS:
        if row[key] is not None:
            _out(f"{key:<16}{row[key]}")
    if rule:
        _out(f"{'why':<16}{rule.rationale}")


@finding_group.command("accept")
@click.argument("ref")
@click.option("--until", "until_text", required=True, help="When the acceptance lapses (UTC).")
@click.option("--reason", required=True, help="Why the risk is accepted (kept in the audit).")
@pass_ctx
def finding_accept(ctx: Context, ref: str, until_text: str, reason: str) -> None:
    """Accept an open finding until a date: it stops failing --fail-on, and reopens by itself
    when the date passes (or a sync finds it again after that). Audited."""
    ctx.require_writable("finding accept")
    row, until = accept(ctx.store, ctx.audit, ctx.actor(), ref, until_text, reason)
    _out(f"{row['id']} accepted until {until.date().isoformat()}: {reason.strip()}")


@cli.command("rules")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def rules_cmd(fmt: str) -> None:
    """Every rule keyshift checks (and the ones it cannot yet, with why)."""
    rules = sorted(RULES.values(), key=lambda r: (r.family, r.id))
    if fmt == "json":
        _out(json.dumps([r.__dict__ for r in rules], indent=2))
        return
    for r in rules:
        state = "" if r.evaluated else f"  [not evaluated: {r.why_not}]"
        _out(f"{r.id:<28}{r.severity:<10}{r.rationale}{state}")
