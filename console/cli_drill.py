"""`keyshift drill ls|show|run|verify|report|cleanup`: incidents rehearsed against the sandbox,
verified against the real servers and scored (console/drills/).

Exit codes: 0 done (a run verified and every check passed), 1 a check failed or the run stopped
on an unexpected error mid-run (recorded on the run by the error's type; its world removed),
2 bad usage or a bad scenario file, 3 unknown scenario or run, 4 refused under --read-only,
9 the sandbox is not running (or stopped answering mid-run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from console.cli import Context, _out, cli, pass_ctx


@cli.group("drill")
def drill_group() -> None:
    """Drills: a scenario (built-in, or YAML in <config dir>/drills) builds its own small world
    in the sandbox, injects a leak or a fault, opens the incident, and --auto works it;
    the outcome is verified against the real servers (the attacker tries its stolen copies),
    scored and kept in the store's history.

    Exit codes: 0 passed; 1 a check failed, or an unexpected error stopped the run mid-way;
    2 usage or a bad scenario file; 3 unknown scenario or run; 4 refused under --read-only;
    9 the sandbox is not running or stopped answering."""


def _scenarios() -> dict[str, Any]:
    from console import drills

    return drills.all_scenarios()


@drill_group.command("ls")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def drill_ls(ctx: Context, fmt: str) -> None:
    """Scenarios (built-in, then yours) with their last score, and recent runs (a run whose
    process died is reported interrupted)."""
    from console import drills

    if not ctx.read_only:
        drills.mark_interrupted(ctx.store, ctx.audit)
    store = ctx.reader if ctx.read_only else ctx.store
    last = store.last_drill_scores()
    scenarios = _scenarios()
    runs = store.drill_runs(limit=20)
    if fmt == "json":
        _out(json.dumps({
            "scenarios": [{**s.summary(), "last": last.get(n)} for n, s in scenarios.items()],
            "runs": [{"id": r["id"], "scenario": r["scenario"], "status": r["status"],
                      "score": r["score"], "started_at": r["started_at"],
                      "error": r["detail"].get("error")} for r in runs]}, indent=2))
        return
    for name, sc in scenarios.items():
        got = last.get(name)
        score = f"{got['score']:g} ({got['status']}, {got['started_at'][:10]})" if got else "-"
        where = "built-in" if sc.source == "built-in" else "yours"
        _out(f"{name:<28} {where:<8} last {score:<28} {sc.title}")
    if runs:
        _out("")
        for r in runs:
            score = "-" if r["score"] is None else f"{r['score']:g}"
            _out(f"{r['id']}  {r['status']:<17} {score:>5}  {r['started_at'][:19]}  "
                 f"{r['scenario']}" + (f"  ({r['detail']['error']})"
                                       if r["detail"].get("error") else ""))


@drill_group.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def drill_show(name: str, fmt: str) -> None:
    """One scenario: its world, injections, response, checks and targets."""
    from console import drills

    sc = drills.get_scenario(name)
    if fmt == "json":
        _out(json.dumps(sc.model_dump(mode="json") | {"source": sc.source,
                                                       "skippable": drills.skippable(sc)},
                        indent=2))
        return
    _out(f"{sc.name}: {sc.title}  ({sc.source})")
    if sc.description:
        _out(sc.description.strip())
    _out("world:")
    for a in sc.world.agents:
        _out(f"  agent {a.name} (owner {a.owner}, {a.environment})")
    for p in sc.world.parts:
        _out(f"  {p.part} {p.name}" + (f" for {p.agent}" if p.agent else ""))
    _out("inject: " + ", ".join(i.step for i in sc.inject))
    _out("respond:")
    for step, acts in sc.respond.steps.items():
        _out(f"  {step}: " + ", ".join(a.action for a in acts))
    _out("checks: " + ", ".join(c.check for c in sc.checks))
    t = sc.targets
    _out(f"targets: detect {t.ttd:g} s, contain {t.ttc:g} s, eradicate {t.ttr:g} s, "
         f"verify {t.ttv:g} s")
    _out("--skip may name: " + ", ".join(drills.skippable(sc)))


def _event_printer(fmt: str) -> Any:
    def show(event: dict[str, Any]) -> None:
        if fmt == "json":
            click.echo(json.dumps(event))
            sys.stdout.flush()
        elif event["event"] in ("start", "incident", "task", "finish"):
            bits = " ".join(f"{k}={v}" for k, v in event.items() if k != "event")
            click.echo(f"{event['event']}: {bits}")

    return show


def _result(row: dict[str, Any], fmt: str) -> None:
    d = row["detail"]
    if fmt == "json":
        _out(json.dumps({"run": row["id"], "scenario": row["scenario"],
                         "status": row["status"], "score": row["score"],
                         "incident": d.get("incident"), "drill_db": d.get("drill_db"),
                         "checks": [{k: c[k] for k in ("check", "target", "ok", "why")}
                                    for c in d.get("checks", [])]}))
    else:
        for c in d.get("checks", []):
            _out(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']} ({c['target']}): {c['why']}")
        _out(f"{row['id']} {row['status']}, score {row['score']:g}/100; "
             f"report: keyshift drill report {row['id']}")
    if row["status"] != "passed":
        sys.exit(1)


@drill_group.command("run")
@click.argument("name")
@click.option("--auto", is_flag=True, help="Work the incident unattended (CI, the schedule).")
@click.option("--skip", "skip", multiple=True,
              help="Leave this step or action undone (rehearse a wrong response); repeatable.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def drill_run(ctx: Context, name: str, auto: bool, skip: tuple[str, ...], fmt: str) -> None:
    """Run a scenario in the sandbox. Without --auto: set up, inject, open the incident and
    say how to work it; `keyshift drill verify RUN` finishes. Exit 1 when a check failed or an
    unexpected error stopped the run mid-way; 9 when the sandbox is down."""
    from console import drills

    ctx.require_writable("drill run")
    sc = drills.get_scenario(name)
    row = drills.run_drill(ctx.store, ctx.audit, sc, actor=ctx.actor(), auto=auto,
                           skip=list(skip), on_event=_event_printer(fmt))
    if row["status"] == "awaiting-response":
        d = row["detail"]
        if fmt == "json":
            _out(json.dumps({"run": row["id"], "status": row["status"],
                             "incident": d.get("incident"), "drill_db": d.get("drill_db"),
                             "inventory": str(Path(d["dir"]) / "inventory.yaml")}))
            return
        _out(f"{row['id']}: the incident {d.get('incident')} is open. Work it with:")
        _out(f"  keyshift --inventory {Path(d['dir']) / 'inventory.yaml'} --db "
             f"{d.get('drill_db')} incident show {d.get('incident')}")
        _out(f"then: keyshift drill verify {row['id']}")
        return
    _result(row, fmt)


@drill_group.command("verify")
@click.argument("run_ref")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def drill_verify(ctx: Context, run_ref: str, fmt: str) -> None:
    """Verify, score and clean up a run a person worked (set up without --auto): in this
    later process the attacker's copies are gone, so each stolen value is checked by the
    reference recorded at injection (key id, accessor, KV version). Exit 1 when a check
    failed or an unexpected error stopped it."""
    from console import drills

    ctx.require_writable("drill verify")
    run_id = drills.resolve_run(ctx.store, run_ref)
    row = ctx.store.get_drill_run(run_id) or {}
    sc = drills.get_scenario(row["scenario"])
    _result(drills.verify_drill(ctx.store, ctx.audit, sc, run_id, actor=ctx.actor()), fmt)


@drill_group.command("report")
@click.argument("run_ref", required=False)
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write it here (0600) instead of stdout.")
@pass_ctx
def drill_report(ctx: Context, run_ref: str | None, fmt: str, out: Path | None) -> None:
    """The after-action report of a run (default: the latest): timeline, scores, ratings,
    what went wrong, the improvement plan, the trend across runs of its scenario."""
    from console import drills
    from console.drills import report
    from console.errors import NotFoundError
    from console.paths import write_private

    store = ctx.reader
    if run_ref is None:
        latest = store.drill_runs(limit=1)
        if not latest:
            raise NotFoundError("no drill has run yet", hint="keyshift drill run NAME --auto")
        run_id = latest[0]["id"]
    else:
        run_id = drills.resolve_run(store, run_ref)
    data = report.build(store, store.get_drill_run(run_id) or {})
    text = json.dumps(data, indent=2) + "\n" if fmt == "json" else report.markdown(data)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_private(out, text)
        _out(f"wrote {out}")


@drill_group.command("cleanup")
@click.argument("run_ref")
@pass_ctx
def drill_cleanup(ctx: Context, run_ref: str) -> None:
    """Remove a run's world from the sandbox (an interrupted run, or one left waiting)."""
    from console import drills

    ctx.require_writable("drill cleanup")
    run_id = drills.resolve_run(ctx.store, run_ref)
    result = drills.cleanup_drill(ctx.store, ctx.audit, run_id, actor=ctx.actor())
    _out(f"{run_id}: removed {len(result['removed'])} resource(s)"
         + (f"; could not remove: {', '.join(result['errors'])}" if result["errors"] else ""))
    if result["errors"]:
        sys.exit(1)
