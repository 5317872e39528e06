"""The rotation commands: ``keyshift rotate`` and ``keyshift runs``.

Exit codes (console/errors.py): 0 rotated (or waiting out its grace period, or waiting for a
person), 10 a rotation or revoke failed or was refused, 4 read-only, 3 unknown credential or
run, 2 bad usage, 1 declined.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import timedelta
from typing import Any

import click

from console.cli import Context, _confirm, _out, cli, pass_ctx
from console.errors import NotFoundError, RotationError, UsageError

MAX_GRACE_HOURS = 8760.0


class Hours(click.ParamType):
    """A grace period in hours: a finite number from 0 to a year."""

    name = "hours"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            hours = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of hours", param, ctx)
        if not math.isfinite(hours) or not 0 <= hours <= MAX_GRACE_HOURS:
            self.fail(f"{value!r} is not between 0 and {MAX_GRACE_HOURS:.0f} hours", param, ctx)
        return hours


class TerminalInteraction:
    """The person at this terminal: instructions on stderr, a hidden prompt, yes/no."""

    def show(self, text: str) -> None:
        click.echo(text, err=True)

    def ask_secret(self, prompt: str) -> str | None:
        value = click.prompt(prompt, hide_input=True, default="", show_default=False, err=True)
        return value or None

    def confirm(self, prompt: str) -> bool:
        return click.confirm(prompt, default=False, err=True)


def _person() -> TerminalInteraction | None:
    return TerminalInteraction() if sys.stdin.isatty() else None


def _engine(ctx: Context):  # type: ignore[no-untyped-def]
    from console.rotation import RotationEngine

    return RotationEngine(ctx.store, ctx.audit, ctx.loaded, read_only=ctx.read_only)


def _reader_engine(ctx: Context):  # type: ignore[no-untyped-def]
    """An engine over the store opened read-only: it can plan, never act."""
    from console.audit import AuditLog
    from console.rotation import RotationEngine

    return RotationEngine(ctx.reader, AuditLog(ctx.reader), ctx.loaded, read_only=True)


def _progress(step: str, status: str, message: str) -> None:
    _out(f"  {step:<12} {status:<9} {message}".rstrip())


def print_plan(plan: Any) -> None:
    _out(f"credential   {plan.credential}")
    _out(f"issuer       {plan.issuer}{'  (a person mints and revokes it)' if plan.manual else ''}")
    _out(f"declared     {plan.origin}")
    for number, target in enumerate(plan.targets, 1):
        _out(f"{'targets' if number == 1 else '':<12} {number}. {target['type']}: "
             f"{target['where']}")
    for number, step in enumerate(plan.steps, 1):
        _out(f"{'steps' if number == 1 else '':<12} {number}. {step['step']}: {step['does']}")
    _out(f"downtime     {plan.downtime}")
    _out(f"grace        {plan.grace_seconds / 3600:g} h before the old value is revoked")
    for need in plan.needs:
        _out(f"needs        {need}")
    for warning in plan.warnings:
        _out(f"warning      {warning}")
    if plan.refused:
        _out(f"REFUSED      {plan.refused}")


@cli.command("rotate")
@click.argument("cred_id", metavar="CREDENTIAL", required=False)
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--grace",
    type=Hours(),
    default=None,
    help="Hours the old value stays valid before revoke (default: the declaration's, else the "
    "policy's; 0 revokes at once).",
)
@click.option("--finish-due", is_flag=True, help="Revoke old values whose grace has passed.")
@click.option("--resume", "resume", is_flag=True, help="Resume runs a crash left unfinished.")
@pass_ctx
def rotate_cmd(
    ctx: Context,
    cred_id: str | None,
    dry_run: bool,
    fmt: str,
    yes: bool,
    grace: float | None,
    finish_due: bool,
    resume: bool,
) -> None:
    """Rotate one credential: issue a new value, deliver it, verify, promote; the old value is
    revoked after the grace period. Provider keys walk a person through the checklist.
    CREDENTIAL is its id, its name, or the end of its id."""
    if finish_due and resume:
        raise UsageError("--finish-due and --resume are separate runs", hint="pass one of them")
    if (finish_due or resume) and (dry_run or cred_id):
        raise UsageError(
            f"--{'finish-due' if finish_due else 'resume'} acts on every due run: "
            "it takes no credential id and no --dry-run",
            hint="see what is pending with: keyshift runs --status awaiting-revoke",
        )
    if finish_due or resume:
        ctx.require_writable("rotate")
        engine = _engine(ctx)
        person = _person()
        if resume:
            results = engine.resume_unfinished(ctx.actor(), _progress, person)
        else:
            results = engine.finish_due(actor=ctx.actor(), progress=_progress, interaction=person)
        _report(results, fmt, "resumed" if resume else "finished")
        return
    if not cred_id:
        raise UsageError("rotate needs a credential", hint="keyshift ls lists them")
    from console.refs import resolve_credential

    if not dry_run:
        ctx.require_writable("rotate")
    cred_id = resolve_credential(ctx.reader if dry_run else ctx.store, cred_id).id
    hours = None if grace is None else timedelta(hours=grace)
    if dry_run:
        plan = _reader_engine(ctx).plan(cred_id, grace=hours)
        if fmt == "json":
            _out(json.dumps(plan.as_dict(), indent=2))
        else:
            print_plan(plan)
            _out("dry run: nothing changed")
        if plan.refused:
            sys.exit(RotationError.exit_code)  # the plan says why; a script sees it cannot work
        return
    ctx.require_writable("rotate")
    engine = _engine(ctx)
    plan = engine.plan(cred_id, grace=hours)
    if fmt == "text":
        print_plan(plan)
    if plan.refused:
        raise RotationError(f"cannot rotate {cred_id}: {plan.refused}", hint=plan.origin)
    _confirm(f"Rotate {cred_id}?", yes)
    result = engine.rotate(
        cred_id,
        actor=ctx.actor(),
        grace=hours,
        progress=_progress if fmt == "text" else None,
        interaction=_person(),
    )
    if fmt == "json":
        _out(json.dumps(result.as_dict(), indent=2))
    else:
        _out(f"run {result.run_id}: {result.status}"
             + (f" ({result.waiting})" if result.waiting else ""))
    if result.error:
        raise RotationError(f"run {result.run_id[:12]}: {result.error}")


def _report(results: list[Any], fmt: str, verb: str) -> None:
    if fmt == "json":
        _out(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            line = f"{r.run_id[:12]}  {r.credential_id}  {r.status}"
            if r.error:
                line += f"  FAILED: {r.error}"
            elif r.waiting:
                line += f"  ({r.waiting})"
            _out(line)
        _out(f"{len(results)} runs {verb}")
    failed = [r for r in results if r.error or r.status in ("rollback-failed", "rolled-back")]
    if failed:
        raise RotationError(
            f"{len(failed)} of {len(results)} runs failed",
            hint="see the errors above; keyshift runs lists every run with its steps",
        )


# --- runs ---------------------------------------------------------------------------------


def run_json(store: Any, row: dict) -> dict[str, Any]:
    """A run as the CLI's JSON shows it: the row, its plan's issuer and targets, its steps."""
    plan = row.get("plan") or {}
    return {
        "id": row["id"],
        "credential": row["credential_id"],
        "subject": row.get("subject"),
        "rotator": row["rotator"],
        "issuer": plan.get("issuer"),
        "targets": [t.get("where") for t in plan.get("targets", [])],
        "status": row["status"],
        "actor": row["actor"],
        "created_at": row["created_at"],
        "finished_at": row.get("finished_at"),
        "revoke_after": row.get("revoke_after"),
        "error": row.get("error"),
        "steps": [
            {
                "step": s["step"],
                "status": s["status"],
                "started_at": s["started_at"],
                "finished_at": s.get("finished_at"),
                "attempts": s.get("attempts", 1),
                "error": s.get("error"),
            }
            for s in store.rotation_steps(row["id"])
        ],
    }


def history_lines(store: Any, runs: list[dict]) -> list[str]:
    lines = []
    for row in runs:
        head = f"{row['created_at'][:19]}  {row['id'][:12]}  {row['status']:<16} {row['rotator']}"
        if row.get("revoke_after") and row["status"] == "awaiting-revoke":
            head += f"  revoke after {str(row['revoke_after'])[:19]}"
        lines.append(head)
        if row.get("error"):
            lines.append(f"    error: {row['error']}")
        for s in store.rotation_steps(row["id"]):
            extra = f" (after {s['attempts']} attempts)" if (s.get("attempts") or 1) > 1 else ""
            err = f": {s['error']}" if s.get("error") else ""
            lines.append(f"    {s['step']:<18} {s['status']}{extra}{err}")
    return lines


def _find_run(store: Any, ref: str) -> dict:
    row = store.get_rotation_run(ref)
    if row is not None:
        return row
    found = store.find_rotation_runs(ref, limit=5) if len(ref) >= 4 else []
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UsageError(
            f"{ref!r} matches several runs: {', '.join(r['id'][:12] for r in found)}",
            hint="give more of the run id",
        )
    raise NotFoundError(f"no rotation run {ref!r}", hint="keyshift runs lists them")


@cli.group("runs", invoke_without_command=True)
@click.option("--credential", "credential", default=None, help="Only this credential's runs.")
@click.option("--status", "status", default=None, help="Only runs in this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def runs_group(
    click_ctx: click.Context, credential: str | None, status: str | None, limit: int, fmt: str
) -> None:
    """Rotation runs with their steps (newest first); subcommands act on one run."""
    if click_ctx.invoked_subcommand is not None:
        return
    from console.model import RunStatus

    if status is not None and status not in {s.value for s in RunStatus}:
        raise UsageError(
            f"unknown status {status!r}", hint=", ".join(s.value for s in RunStatus)
        )
    ctx: Context = click_ctx.obj
    store = ctx.reader
    if credential is not None:
        from console.refs import resolve_credential

        credential = resolve_credential(store, credential).id
    rows = store.rotation_runs(credential, status=status, limit=limit)
    if fmt == "json":
        _out(json.dumps([run_json(store, r) for r in rows], indent=2))
        return
    if not rows:
        _out("no rotation runs")
        return
    for row in rows:
        _out(f"{row['credential_id']}")
        for line in history_lines(store, [row]):
            _out(f"  {line}")


@runs_group.command("abandon")
@click.argument("run_ref")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--yes", "-y", is_flag=True)
@pass_ctx
def runs_abandon(ctx: Context, run_ref: str, reason: str, yes: bool) -> None:
    """Give up on a run that cannot finish; it releases its claim. Nothing at the issuer or
    the targets is touched: clean up what it left by hand (the audit entry lists it)."""
    ctx.require_writable("abandon a run")
    row = _find_run(ctx.store, run_ref)
    _confirm(f"Abandon run {row['id'][:12]} of {row['credential_id']}?", yes)
    result = _engine(ctx).abandon(row["id"], actor=ctx.actor(), reason=reason)
    _out(f"run {result.run_id}: {result.status}")


@runs_group.command("finish")
@click.argument("run_ref")
@click.option("--now", "now", is_flag=True, help="Revoke now, before the grace period ends.")
@pass_ctx
def runs_finish(ctx: Context, run_ref: str, now: bool) -> None:
    """Run an awaiting-revoke run's due revoke stages (all of them at once with --now)."""
    ctx.require_writable("finish a run")
    row = _find_run(ctx.store, run_ref)
    result = _engine(ctx).finish_run(
        row["id"], actor=ctx.actor(), now_regardless=now, progress=_progress,
        interaction=_person(),
    )
    _out(f"run {result.run_id}: {result.status}"
         + (f" ({result.waiting})" if result.waiting else ""))
    if result.error:
        raise RotationError(f"run {result.run_id[:12]}: {result.error}")


@runs_group.command("rollback")
@click.argument("run_ref")
@click.option("--yes", "-y", is_flag=True)
@pass_ctx
def runs_rollback(ctx: Context, run_ref: str, yes: bool) -> None:
    """Undo a run that stopped before promote: discard its new value, put the old one back.
    A promoted run is refused (finish or abandon it)."""
    ctx.require_writable("roll back a run")
    row = _find_run(ctx.store, run_ref)
    _confirm(f"Roll back run {row['id'][:12]} of {row['credential_id']}?", yes)
    result = _engine(ctx).roll_back(
        row["id"], actor=ctx.actor(), progress=_progress, interaction=_person()
    )
    _out(f"run {result.run_id}: {result.status}")


@runs_group.command("resume")
@click.argument("run_ref")
@pass_ctx
def runs_resume(ctx: Context, run_ref: str) -> None:
    """Carry one interrupted run on (or roll it back when its new value was lost)."""
    ctx.require_writable("resume a run")
    row = _find_run(ctx.store, run_ref)
    result = _engine(ctx).resume(
        row["id"], actor=ctx.actor(), progress=_progress, interaction=_person()
    )
    _out(f"run {result.run_id}: {result.status}")
    if result.error:
        raise RotationError(f"run {result.run_id[:12]}: {result.error}")


__all__ = ["history_lines", "print_plan", "run_json"]
