"""`keyshift schedule run|status|release`: the headless scheduled mode (console/schedule/)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from console.cli import Context, _out, cli, pass_ctx
from console.errors import KeyshiftError
from console.redaction import redact_active

log = logging.getLogger("keyshift.schedule")


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, job, event, fields and the message. The record
    has passed the redacting filter (the message); the fields are references by
    construction and are scrubbed again here all the same."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "job": getattr(record, "job", None),
            "event": getattr(record, "event", None),
            "fields": fields if isinstance(fields, dict) else {},
            "message": record.getMessage(),
        }
        if record.exc_info:
            exc = record.exc_info[1]
            out["error"] = f"{type(exc).__name__}: {exc}" if exc else None
        elif record.exc_text:
            # the redacting filter formatted (and scrubbed) the traceback already: its last
            # line is the exception, and the whole of it is one field, not extra lines
            out["error"] = record.exc_text.strip().splitlines()[-1]
            out["traceback"] = record.exc_text
        return redact_active(json.dumps(out, default=str, separators=(",", ":")))


def _log_to_stderr(fmt: str, verbose: int) -> None:
    """A service's log is its stderr (journald, a container runtime): INFO and up, text or
    JSON lines, through the redacting filter ``_setup_logging`` installed."""
    root = logging.getLogger()
    logging.captureWarnings(True)  # a warning printed bare would break the JSON lines
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(
            handler, "stream", None
        ) is sys.stderr:
            handler.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
            if fmt == "json":
                handler.setFormatter(JsonLines())
            else:
                handler.setFormatter(
                    logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
                )
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@cli.group("schedule")
def schedule_group() -> None:
    """The headless scheduled mode: sync, due rotations, revokes, checks and alerts."""


@schedule_group.command("run")
@click.option("--once", is_flag=True, help="Run every job that is due now, then exit.")
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write Prometheus metrics here (a *.prom file) after each job.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve /metrics on 127.0.0.1 at this port.",
)
@click.option("--log-format", "log_format", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def schedule_run(
    ctx: Context,
    once: bool,
    metrics_file: Path | None,
    metrics_port: int | None,
    log_format: str,
) -> None:
    """Run the schedule: each job at its interval (from the inventory's schedule:), its next
    time derived from the store. SIGTERM/SIGINT: no new job or step starts, the current step
    finishes, exit 0. --once exits 1 when a job it ran failed."""
    _log_to_stderr(log_format, ctx.verbose)
    try:
        code = _run(ctx, once, metrics_file, metrics_port)
    except KeyshiftError as exc:
        if log_format != "json":
            raise
        # on a JSON log, the refusal is a JSON line too
        log.error(exc.one_line(), extra={"event": "error", "fields": {"exit": exc.exit_code}})
        sys.exit(exc.exit_code)
    if code:
        sys.exit(code)


def _run(ctx: Context, once: bool, metrics_file: Path | None, metrics_port: int | None) -> int:
    ctx.require_writable("schedule run (it rotates and revokes credentials)")
    from console import metrics
    from console.alerts import Alerter
    from console.schedule import Scheduler

    loaded, store, audit = ctx.loaded, ctx.store, ctx.audit

    def collect() -> str:
        return metrics.collect(store, loaded, datetime.now(UTC))

    def after_job(_job: str, _outcome: Any) -> None:
        if metrics_file is not None:
            metrics.write_textfile(metrics_file, collect())

    alerter = Alerter(loaded.inventory.alerts, store)
    scheduler = Scheduler(
        store, loaded, audit, actor=ctx.actor(), alerter=alerter, on_job_done=after_job
    )
    stopped = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopped.set()
        scheduler.request_stop()

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    server = None
    try:
        if metrics_file is not None:
            metrics.write_textfile(metrics_file, collect())  # refuse a bad path at once
        if metrics_port is not None:
            server = metrics.serve(metrics_port, collect)
            log.info("metrics at %s", server.url,
                     extra={"event": "metrics", "fields": {"url": server.url}})
        alerter.start()
        log.info(
            "schedule %s: %d jobs", "pass" if once else "started", len(scheduler.specs),
            extra={"event": "start", "fields": {"once": once, "pid": scheduler.owner.pid}},
        )
        if once:
            ran = scheduler.run_due()
            if not stopped.is_set():
                # what this pass raised goes out now (a receiver that is down keeps it in
                # the store for the next pass, never holding this one up for long)
                alerter.stop()
                alerter.deliver_pending(scheduler.stop)
            failed = [name for name, outcome in ran if outcome.status == "failed"]
            log.info(
                "schedule pass done: %d ran, %d failed", len(ran), len(failed),
                extra={"event": "done", "fields": {"ran": [n for n, _ in ran],
                                                    "failed": failed}},
            )
            return 1 if failed and not stopped.is_set() else 0
        scheduler.serve()
        log.info("schedule stopped", extra={"event": "stopped", "fields": {}})
        return 0
    finally:
        alerter.stop()
        if server is not None:
            server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@schedule_group.command("status")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def schedule_status_cmd(ctx: Context, fmt: str) -> None:
    """Each job's next run, last start, finish, status and error, failures in a row, whether it
    waits for a maintenance window, and which process holds it; the credentials the schedule
    stopped retrying. Reads only."""
    from console.schedule import schedule_status

    status = schedule_status(ctx.reader, ctx.loaded, datetime.now(UTC))
    if fmt == "json":
        _out(json.dumps(status, indent=2, default=str))
        return
    _out(f"{'JOB':<18} {'STATE':<15} {'NEXT RUN':<17} {'LAST STATUS':<12} "
         f"{'FAILS':>5}  LAST FINISHED     HELD BY")
    for job in status["jobs"]:
        owner = job["owner"]
        held = f"{owner['host']}:{owner['pid']}" if owner else "-"
        _out(
            f"{job['job']:<18} {job['state']:<15} {_short(job['next_run']):<17} "
            f"{job['last_status'] or '-':<12} {job['failures_in_row']:>5}  "
            f"{_short(job['last_finished']):<17} {held}"
        )
        if job["last_error"]:
            _out(f"{'':<18} error: {job['last_error']}")
        if owner and job["state"] == "running" and owner.get("alive") is None:
            _out(
                f"{'':<18} held by pid {owner['pid']} on another host ({owner['host']}); "
                "keyshift cannot check whether it still runs. If it is gone (a container "
                f"recreated, a host lost), keyshift schedule release --job {job['job']}"
            )
    if status["maintenance_windows"]:
        windows = "; ".join(
            f"{','.join(w['days'])} {w['start']}-{w['end']} {w['timezone']}"
            for w in status["maintenance_windows"]
        )
        _out(f"rotations and revokes run only in: {windows}")
    for hold in status["held_credentials"]:
        _out(
            f"held: {hold['credential']} after {hold['failures_in_row']} failures in a row "
            f"({hold['last_error'] or 'no error recorded'}); "
            f"keyshift schedule release {hold['credential']} to retry"
        )


def _short(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@schedule_group.command("release")
@click.argument("credential", required=False)
@click.option("--job", "job", default=None, metavar="NAME",
              help="Release the claim on this job instead (see `schedule status`).")
@pass_ctx
def schedule_release(ctx: Context, credential: str | None, job: str | None) -> None:
    """Let the schedule retry a credential it stopped retrying after a failure loop (a
    successful rotation of it does the same); or, with --job, end the claim a process that
    is gone still has on a job (one on another host, which keyshift cannot check)."""
    from console.errors import NotFoundError, UsageError

    if (credential is None) == (job is None):
        raise UsageError(
            "name a credential or --job NAME, not both and not neither",
            hint="keyshift schedule release <credential>, or keyshift schedule release "
            "--job rotate-due:high",
        )
    if job is not None:
        _release_job(ctx, job)
        return
    assert credential is not None
    ctx.require_writable(f"schedule release {credential}")
    from console.refs import resolve_credential

    store = ctx.store
    cred = resolve_credential(store, credential)
    with store.transaction():
        released = store.release_credential_hold(cred.id)
        if released:
            ctx.audit.append(ctx.actor(), "schedule.release", cred.id, {})
    if not released:
        raise NotFoundError(f"the schedule holds nothing back for {cred.id}")
    _out(f"released {cred.id}: the next due rotation retries it")


def _release_job(ctx: Context, job: str) -> None:
    ctx.require_writable(f"schedule release --job {job}")
    from console import process
    from console.errors import NotFoundError, UsageError
    from console.schedule import job_specs

    names = [spec.name for spec in job_specs(ctx.loaded.inventory.schedule)]
    if job not in names:
        raise UsageError(f"no schedule job {job!r}", hint=f"jobs: {', '.join(names)}")
    store = ctx.store
    row = store.schedule_job(job)
    if row is None or not row.get("owner_pid"):
        raise NotFoundError(f"no process holds the job {job}",
                            hint="keyshift schedule status shows who holds what")
    host, pid, started = row.get("owner_host"), row.get("owner_pid"), row.get("owner_started")
    held_by = f"pid {pid} on {host}"
    if process.alive(host, pid, started):
        # on this host and still running: releasing would let a second run start beside it
        raise UsageError(
            f"the job {job} is held by {held_by}, which is still running",
            hint=f"stop that process (kill -TERM {pid}); it releases the job as it exits",
        )
    note = f"claim of {held_by} released by {ctx.actor()}"
    with store.transaction():
        released = store.release_schedule_job(job, row, note=note, now=datetime.now(UTC))
        if released:
            ctx.audit.append(
                ctx.actor(), "schedule.release-job", job,
                {"host": host, "pid": pid, "started": started},
            )
    if not released:
        raise NotFoundError(
            f"the job {job} is no longer held by {held_by}",
            hint="it finished or another process took it over; see keyshift schedule status",
        )
    _out(f"released {job}: it was held by {held_by}; it is due again at the next pass")
