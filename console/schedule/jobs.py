"""The schedule's jobs: what each one does when it runs.

Each job is a function of a ``JobContext`` returning a ``JobOutcome``. They call the same
services a person would (``run_sync``, the ``rotate-due`` and ``finish-due`` playbooks,
``findings.refresh``, ``AuditLog.verify``) and raise alerts through the ``Alerter``, which
records each alert once per dedupe key and delivers it from its own thread: a receiver that
is down never holds a rotation up.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from console.inventory import Schedule
from console.model import Sensitivity
from console.playbooks.selection import UNCLASSIFIED
from console.redaction import redact_active

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

log = logging.getLogger("keyshift.schedule")

# the severities a new finding is alerted at
ALERT_SEVERITIES = ("critical", "high")


@dataclass
class JobOutcome:
    status: str  # ok | failed | stopped | skipped
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobContext:
    store: Store
    loaded: LoadedInventory
    audit: AuditLog
    actor: str
    alerter: Any  # console.alerts.Alerter, or None (no alerts: status and tests)
    clock: Callable[[], datetime]
    stop: threading.Event  # set: finish the current step and return

    @property
    def schedule(self) -> Schedule:
        return self.loaded.inventory.schedule

    def alert(
        self, event: str, subject: str, *, dedupe_key: str, summary: str,
        fields: dict[str, Any],
    ) -> bool:
        if self.alerter is None:
            return False
        try:
            fresh = bool(
                self.alerter.raise_alert(
                    event, subject, dedupe_key=dedupe_key, summary=summary, fields=fields
                )
            )
        except Exception as exc:  # an alert that cannot be recorded must not stop the job
            log.warning(
                "alert %s for %s not recorded: %s", event, subject, type(exc).__name__,
                extra={"event": "alert-failed", "fields": {"alert": event}},
            )
            return False
        if fresh:
            log.info(
                "alert %s: %s", event, summary,
                extra={"event": "alert", "fields": {"alert": event, "subject": subject}},
            )
        return fresh


@dataclass(frozen=True)
class JobSpec:
    name: str
    every: timedelta
    windowed: bool  # rotations and revokes: only inside a maintenance window
    run: Callable[[JobContext], JobOutcome]
    sensitivity: str | None = None


def job_specs(schedule: Schedule) -> list[JobSpec]:
    """Every job, in the order a ``--once`` pass runs them: the sync first (the others read
    what it wrote), the checks, then revokes and rotations."""
    specs = [
        JobSpec("sync", schedule.sync_every, False, sync_job),
        JobSpec("findings-refresh", schedule.findings_refresh_every, False, findings_job),
        JobSpec("expiry-check", schedule.expiry_check_every, False, expiry_job),
        JobSpec("audit-verify", schedule.audit_verify_every, False, audit_job),
        JobSpec("finish-due", schedule.finish_due_every, True, finish_due_job),
    ]
    cadences = [(s.value, schedule.rotate_due[s]) for s in Sensitivity]
    cadences.append((UNCLASSIFIED, schedule.rotate_due_unclassified))
    for sens, every in cadences:
        specs.append(
            JobSpec(
                f"rotate-due:{sens}",
                every,
                True,
                functools.partial(rotate_due_job, sensitivity=sens),
                sensitivity=sens,
            )
        )
    if schedule.drill is not None:
        specs.append(JobSpec("drill", schedule.drill.every, False, drill_job))
    return specs


def drill_job(ctx: JobContext) -> JobOutcome:
    """The inventory's scheduled drill, --auto, against the sandbox (console/drills): alerted
    as ``drill-failed`` when a check failed (or the drill could not run) and as
    ``drill-regression`` when it scored below the scenario's previous run."""
    from console import drills
    from console.errors import KeyshiftError

    spec = ctx.schedule.drill
    assert spec is not None
    try:
        scenario = drills.get_scenario(spec.scenario)
        row = drills.run_drill(ctx.store, ctx.audit, scenario, actor=ctx.actor, auto=True)
    except Exception as exc:
        # any failure is a drill that could not run: alerted, never a silent job error (an
        # unexpected one by its type only: its text can quote a URL or a token)
        why = exc.one_line() if isinstance(exc, KeyshiftError) else \
            f"unexpected {type(exc).__name__}"
        ctx.alert("drill-failed", spec.scenario, dedupe_key=f"drill-failed:{spec.scenario}:"
                  f"{ctx.clock().date().isoformat()}", summary=f"drill {spec.scenario} could "
                  f"not run: {why}", fields={"scenario": spec.scenario})
        return JobOutcome("failed", why)
    detail = {"run": row["id"], "status": row["status"], "score": row["score"]}
    failed = [c["check"] for c in row["detail"].get("checks", []) if not c["ok"]]
    if failed:
        ctx.alert("drill-failed", spec.scenario, dedupe_key=f"drill-failed:{row['id']}",
                  summary=f"drill {spec.scenario} ({row['id']}): check(s) failed: "
                          f"{', '.join(failed)}",
                  fields={"run": row["id"], "scenario": spec.scenario, "failed": failed,
                          "score": row["score"]})
    before = ctx.store.previous_drill_run(spec.scenario, row["started_at"])
    if before is not None and row["score"] is not None and before["score"] is not None \
            and row["score"] < before["score"]:
        ctx.alert("drill-regression", spec.scenario, dedupe_key=f"drill-regression:{row['id']}",
                  summary=f"drill {spec.scenario} scored {row['score']:g}, below "
                          f"{before['score']:g} ({before['id']})",
                  fields={"run": row["id"], "previous": before["id"], "score": row["score"],
                          "previous_score": before["score"]})
        detail["regressed_from"] = before["score"]
    return JobOutcome("failed" if failed else "ok",
                      f"check(s) failed: {', '.join(failed)}" if failed else None, detail)


# --- sync, findings, expiry, audit --------------------------------------------------------


def sync_job(ctx: JobContext) -> JobOutcome:
    from console.sync import run_sync

    summary = run_sync(ctx.loaded, ctx.store, ctx.audit, actor=ctx.actor)
    detail = {
        "sync_id": summary.sync_id,
        "sources": {o.source: o.status for o in summary.outcomes},
        "errors": summary.error_count,
        "findings_error": summary.findings_error,
    }
    detail["high_findings_alerted"] = alert_high_findings(ctx)
    if summary.status != "ok":
        bad = [o.source for o in summary.outcomes if o.status != "ok"]
        return JobOutcome("failed", f"sync {summary.status}: {', '.join(bad)}", detail)
    return JobOutcome("ok", None, detail)


def findings_job(ctx: JobContext) -> JobOutcome:
    from console import findings

    changes = findings.refresh(ctx.store, ctx.loaded, ctx.audit, ctx.actor, now=ctx.clock())
    detail = {
        "new": len(changes.new),
        "reopened": len(changes.reopened),
        "resolved": len(changes.resolved),
        "open": changes.open,
        "high_findings_alerted": alert_high_findings(ctx),
    }
    return JobOutcome("ok", None, detail)


def alert_high_findings(ctx: JobContext) -> int:
    """One ``high-finding`` alert per open finding at high or critical: the dedupe key is the
    finding's id and when it was first seen, so a finding that is resolved and comes back
    later is new again, and one that stays open is alerted once."""
    sent = 0
    for row in ctx.store.findings():
        if row.get("status") != "open" or row.get("severity") not in ALERT_SEVERITIES:
            continue
        first = row.get("first_seen") or ""
        fields = {
            "finding": row["id"],
            "rule": row.get("rule"),
            "severity": row.get("severity"),
            "credential": row.get("credential_id"),
            "first_seen": first,
        }
        if ctx.alert(
            "high-finding",
            row.get("credential_id") or row["id"],
            dedupe_key=f"high-finding:{row['id']}:{first}",
            summary=f"{row.get('severity')} finding {row.get('rule')} on "
            f"{row.get('credential_id') or row['id']}",
            fields=fields,
        ):
            sent += 1
    return sent


def expiry_job(ctx: JobContext) -> JobOutcome:
    """``expiring`` once per credential and expiry date (a renewed credential that nears its
    new expiry is warned again); ``overdue`` once per credential a day."""
    from console.due import due_credentials

    now = ctx.clock()
    found = due_credentials(ctx.store, ctx.loaded, now, ctx.schedule.expiry_warning)
    expiring = overdue = 0
    for due in found:
        cred = due.credential
        fields: dict[str, Any] = {
            "credential": cred.id,
            "name": cred.name,
            "owner": cred.owner,
            "sensitivity": cred.sensitivity,
            "reason": due.reason,
            "detail": due.detail,
        }
        if due.reason == "expiring" and cred.expires_at is not None:
            fields["expires_at"] = cred.expires_at.isoformat()
            expiring += ctx.alert(
                "expiring",
                cred.id,
                dedupe_key=f"expiring:{cred.id}:{cred.expires_at.date().isoformat()}",
                summary=f"{cred.name} {due.detail}",
                fields=fields,
            )
        else:
            overdue += ctx.alert(
                "overdue",
                cred.id,
                dedupe_key=f"overdue:{cred.id}:{now.date().isoformat()}",
                summary=f"{cred.name} is overdue: {due.detail}",
                fields=fields,
            )
    return JobOutcome(
        "ok", None, {"due": len(found), "expiring_alerted": expiring, "overdue_alerted": overdue}
    )


def audit_job(ctx: JobContext) -> JobOutcome:
    """Verify the chain; a break is alerted once per first bad entry. The head is posted as
    an ``audit-anchor`` alert, so a copy lives outside the machine that holds the store."""
    result = ctx.audit.verify()
    detail: dict[str, Any] = {"ok": result.ok, "count": result.count}
    if not result.ok:
        ctx.alert(
            "audit-broken",
            "audit",
            dedupe_key=f"audit-broken:{result.bad_seq}:{result.reason}",
            summary=result.message,
            fields={"seq": result.bad_seq, "reason": result.reason, "count": result.count},
        )
        detail.update(bad_seq=result.bad_seq, reason=result.reason)
        return JobOutcome("failed", result.message, detail)
    anchor_fn = getattr(ctx.audit, "anchor", None)
    if anchor_fn is not None and result.count:
        anchor = anchor_fn()
        text = getattr(anchor, "text", str(anchor))
        detail["anchor"] = text
        ctx.alert(
            "audit-anchor",
            "audit",
            dedupe_key=f"audit-anchor:{text}",
            summary=f"audit chain head {text}",
            fields={
                "anchor": text,
                "seq": getattr(anchor, "seq", None),
                "hash": getattr(anchor, "hash", None),
                "key_id": getattr(anchor, "key_id", None),
            },
        )
    return JobOutcome("ok", None, detail)


# --- rotations and revokes ----------------------------------------------------------------


def finish_due_job(ctx: JobContext) -> JobOutcome:
    """Runs a crashed process left (their owner is gone) are resumed first, so a rotation
    cut by SIGKILL or a power cut is carried on or rolled back without a person; then the
    revokes whose grace has passed."""
    resumed = _engine(ctx, set()).resume_unfinished(ctx.actor)
    failed = [r for r in resumed if _resume_failed(r)]
    for result in failed:
        # the same path as a failed scheduled rotation: an alert, and the credential's streak
        try:
            _failed_rotation(ctx, "resume", _ResumedStep.of(result))
        except Exception as exc:  # the revokes below must still run
            log.warning(
                "finish-due: could not record the failed resume of %s: %s",
                result.credential_id, redact_active(f"{type(exc).__name__}: {exc}"),
                extra={"event": "record-failed", "fields": {"run_id": result.run_id}},
            )
    outcome = _playbook_job(ctx, "finish-due", {}, held=set())
    if resumed:
        outcome.detail["resumed"] = {r.run_id: r.status for r in resumed}
    if failed:
        outcome.detail["resume_failed"] = sorted(r.run_id for r in failed)
        what = f"{len(failed)} of {len(resumed)} resumed runs failed"
        if outcome.status == "ok":
            outcome.status, outcome.error = "failed", what
        else:
            outcome.error = f"{outcome.error}; {what}" if outcome.error else what
            if outcome.status != "stopped":
                outcome.status = "failed"
    return outcome


def _resume_failed(result: Any) -> bool:
    """A resumed run that ended in error or was rolled back (a run that waits for a person
    is not a failure of the resume)."""
    if result.waiting:
        return False
    return bool(result.error) or result.status not in ("completed", "awaiting-revoke")


@dataclass(frozen=True)
class _ResumedStep:
    """A failed resume, shaped like the playbook step ``_failed_rotation`` reads."""

    credential_id: str
    rotation_run_id: str
    action: str
    error: str | None

    @classmethod
    def of(cls, result: Any) -> _ResumedStep:
        # promoted already: what failed is the revoke (no streak, as a failed finish);
        # otherwise the rotation itself did not happen
        promoted = result.status in ("completed", "awaiting-revoke")
        return cls(result.credential_id, result.run_id, "finish" if promoted else "rotate",
                   result.error)


def rotate_due_job(ctx: JobContext, sensitivity: str | None = None) -> JobOutcome:
    assert sensitivity is not None
    held = {h["credential_id"] for h in ctx.store.credential_holds(ctx.schedule.failure_loop)}
    return _playbook_job(ctx, "rotate-due", {"sensitivity": sensitivity}, held=held)


def _playbook_job(
    ctx: JobContext, name: str, params: dict[str, str], *, held: set[str]
) -> JobOutcome:
    from console.playbooks import run_playbook
    from console.playbooks.builtins import builtins

    # the built-ins only: a user's playbook file is never run by the schedule, and one broken
    # file in <config dir>/playbooks must not stop every scheduled rotation and revoke
    pb = builtins()[name]
    # the inventory's schedule.concurrency bounds the schedule's rotations, whatever the
    # playbook's own default
    pb = pb.model_copy(update={"concurrency": ctx.schedule.concurrency})
    counted = {"failed": 0}
    log_event = _logger(name)

    def on_event(event: Any) -> None:
        # each step is handled as it finishes, not after the playbook: a failure is alerted
        # while the rest still rotates (and the alert's delivery, on the alerter's thread,
        # holds none of it up)
        log_event(event)
        if event.kind != "step" or not event.credential_id:
            return
        if event.action not in ("rotate", "finish"):
            return
        if event.action == "rotate" and event.credential_id in held:
            return  # refused by the hold: neither a new failure nor a new alert
        try:
            if event.status == "failed":
                counted["failed"] += 1
                _failed_rotation(ctx, event.run_id, event)
            elif event.status == "done" and event.action == "rotate":
                ctx.store.record_scheduled_rotation(
                    event.credential_id, ok=True, error=None,
                    run_id=event.rotation_run_id, now=ctx.clock(),
                )
        except Exception as exc:  # the playbook would drop a watcher that raises
            log.warning(
                "%s: could not record step of %s: %s", name, event.credential_id,
                redact_active(f"{type(exc).__name__}: {exc}"),
                extra={"event": "record-failed", "fields": {}},
            )

    result = run_playbook(
        pb,
        params,
        store=ctx.store,
        audit=ctx.audit,
        loaded=ctx.loaded,
        actor=ctx.actor,
        stop=ctx.stop,
        now=ctx.clock(),
        on_event=on_event,
        engine=_engine(ctx, held),
    )
    detail = {
        "playbook_run": result.run_id,
        "playbook_status": result.status,
        "counts": result.counts,
        "held": sorted(held),
    }
    failed = counted["failed"]
    if result.status == "stopped":
        return JobOutcome("stopped", "stopped before every credential was done", detail)
    if failed:
        return JobOutcome("failed", f"{failed} of {len(result.steps)} steps failed", detail)
    return JobOutcome("ok", None, detail)


def _engine(ctx: JobContext, held: set[str]) -> Any:
    """The rotation engine the playbook drives, refusing the credentials the schedule holds
    (a failure loop waits for a person) before anything is planned or claimed."""
    from console.errors import RotationError
    from console.rotation import RotationEngine

    class HoldingEngine(RotationEngine):
        def rotate(self, cred_id: str, **kwargs: Any) -> Any:
            if cred_id in held:
                raise RotationError(
                    f"{cred_id} is held by the schedule after {ctx.schedule.failure_loop} "
                    "failed rotations in a row",
                    hint=f"fix the cause, then keyshift rotate {cred_id} (or keyshift "
                    f"schedule release {cred_id})",
                )
            return super().rotate(cred_id, **kwargs)

    return HoldingEngine(ctx.store, ctx.audit, ctx.loaded, clock=ctx.clock)


def _failed_rotation(ctx: JobContext, playbook_run: str, step: Any) -> None:
    """``rotation-failed`` once per run (the credential, the journal's failed step and its
    error); for a rotation, one more failure in the credential's streak, and at the
    inventory's ``failure_loop`` a ``failure-loop`` alert and a hold."""
    cred_id, run_id = step.credential_id, step.rotation_run_id
    failed_step, error = _journal_failure(ctx.store, run_id, step)
    ctx.alert(
        "rotation-failed",
        cred_id,
        dedupe_key=f"rotation-failed:{run_id or playbook_run + ':' + cred_id}",
        summary=f"{step.action} of {cred_id} failed at {failed_step}: {error}",
        fields={
            "credential": cred_id,
            "action": step.action,
            "step": failed_step,
            "error": error,
            "run_id": run_id,
            "playbook_run": playbook_run,
        },
    )
    if step.action != "rotate":
        return  # a revoke that failed is retried by the next finish-due; it has no streak
    streak = ctx.store.record_scheduled_rotation(
        cred_id, ok=False, error=error, run_id=run_id, now=ctx.clock()
    )
    limit = ctx.schedule.failure_loop
    if streak >= limit:
        ctx.alert(
            "failure-loop",
            cred_id,
            dedupe_key=f"failure-loop:{cred_id}:{run_id or playbook_run}",
            summary=f"{cred_id} failed {streak} scheduled rotations in a row; the schedule "
            "stops retrying it until a rotation succeeds or `keyshift schedule release` "
            "is run",
            fields={
                "credential": cred_id,
                "failures_in_row": streak,
                "step": failed_step,
                "error": error,
                "run_id": run_id,
            },
        )


def _journal_failure(store: Store, run_id: str | None, step: Any) -> tuple[str, str]:
    """The journal's failed step and its error (the playbook step's own error when no run
    was journaled: a refused plan)."""
    if run_id:
        failed = [s for s in store.rotation_steps(run_id) if s.get("status") == "failed"]
        if failed:
            last = failed[-1]
            return str(last.get("step")), str(last.get("error") or step.error or "failed")
        run = store.get_rotation_run(run_id) or {}
        if run.get("error"):
            return "run", str(run["error"])
    return "plan", str(step.error or "failed")


def _logger(playbook: str) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind not in ("step", "finish", "start"):
            return
        fields = event.as_dict() if hasattr(event, "as_dict") else {}
        fields.pop("message", None)
        level = logging.WARNING if getattr(event, "status", None) == "failed" else logging.INFO
        log.log(
            level,
            "%s %s %s %s", playbook, kind, fields.get("credential_id", ""),
            fields.get("status", ""),
            extra={"event": f"playbook-{kind}", "fields": fields},
        )

    return on_event
