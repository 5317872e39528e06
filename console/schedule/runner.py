"""Running the jobs: once (``--once``), or for as long as the process lives (APScheduler).

The store is the schedule. Each job's next time is computed from its row in
``schedule_jobs`` (``job_state``, a pure function of the row, the job's interval, the windows
and the time); APScheduler only holds the one next run of each job, as a date trigger,
re-added from the store after every run. So a restart loses nothing, a job missed while the
process was down runs once when it comes back (coalesced: one last start, one next time), and
two schedulers over one store share the work: a job runs only after its row is claimed by
compare-and-swap (console/store/schedule.py), a live owner's claim is left alone, and a dead
one's is taken over.

APScheduler 3 is used with the in-memory job store on purpose: its SQLAlchemy store must not
be shared between schedulers, and it would keep a second copy of what ``schedule_jobs``
already says. ``coalesce``, ``max_instances=1`` and ``misfire_grace_time=None`` (run however
late) keep it from replaying or overlapping a job inside one process; the claim does so across
processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from console import process
from console.errors import KeyshiftError
from console.inventory import MaintenanceWindow
from console.redaction import redact_active
from console.schedule.jobs import JobContext, JobOutcome, JobSpec, job_specs
from console.schedule.timing import next_due, window_end
from console.store.rows import parse_ts

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

log = logging.getLogger("keyshift.schedule")

# how soon a job another live process holds is looked at again
RECHECK = timedelta(seconds=30)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobState:
    name: str
    every: timedelta
    windowed: bool
    next_run: datetime
    waits_for_window: bool
    last_started: datetime | None
    last_finished: datetime | None
    last_status: str | None
    last_error: str | None
    failures_in_row: int
    owner: dict[str, Any] | None  # the process that holds the job now
    state: str  # idle | due | running | interrupted | waiting-window

    @property
    def held_elsewhere(self) -> bool:
        return self.state == "running"

    def due(self, now: datetime) -> bool:
        return self.state != "running" and not self.waits_for_window and self.next_run <= now

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "job": self.name,
            "every_seconds": int(self.every.total_seconds()),
            "windowed": self.windowed,
            "state": self.state,
            "next_run": iso(self.next_run),
            "waits_for_window": self.waits_for_window,
            "last_started": iso(self.last_started),
            "last_finished": iso(self.last_finished),
            "last_status": self.last_status,
            "last_error": self.last_error,
            "failures_in_row": self.failures_in_row,
            "owner": self.owner,
        }


def job_state(
    spec: JobSpec,
    row: dict | None,
    now: datetime,
    windows: Sequence[MaintenanceWindow],
    alive: Callable[[str | None, int | None, str | None], bool | None] = process.alive,
) -> JobState:
    """Where ``spec`` stands, from its row: pure but for ``alive`` (is the owner's process
    still there), which tests may replace."""
    row = row or {}
    last_started = parse_ts(row.get("last_started"))
    owner = None
    state = "idle"
    basis = last_started
    if row.get("owner_pid"):
        lives = alive(row.get("owner_host"), row.get("owner_pid"), row.get("owner_started"))
        owner = {
            "host": row.get("owner_host"),
            "pid": row.get("owner_pid"),
            "started": row.get("owner_started"),
            # None: on another host, where nothing here can tell (a recreated container has
            # a new hostname, so its SIGKILLed run would hold the job for good: a person
            # checks and runs `keyshift schedule release --job`)
            "alive": lives,
        }
        if lives is False:
            state, basis = "interrupted", None  # its owner died mid-run: due again at once
        else:
            state = "running"
    elif row.get("last_status") in ("stopped", "released"):
        # stopped half-way (SIGTERM, a window closing), or a dead run's claim released by a
        # person: the rest is still due
        basis = None
    due = next_due(basis, spec.every, now, windows if spec.windowed else ())
    if state == "idle":
        state = "waiting-window" if due.waits_for_window else (
            "due" if due.at <= now else "idle"
        )
    return JobState(
        name=spec.name,
        every=spec.every,
        windowed=spec.windowed,
        next_run=due.at,
        waits_for_window=due.waits_for_window,
        last_started=last_started,
        last_finished=parse_ts(row.get("last_finished")),
        last_status=row.get("last_status"),
        last_error=row.get("last_error"),
        failures_in_row=int(row.get("failures_in_row") or 0),
        owner=owner,
        state=state,
    )


def schedule_status(store: Store, loaded: LoadedInventory, now: datetime) -> dict[str, Any]:
    """What ``keyshift schedule status`` shows; reads only."""
    schedule = loaded.inventory.schedule
    rows = {r["job"]: r for r in store.schedule_jobs()}
    jobs = [
        job_state(spec, rows.get(spec.name), now, schedule.maintenance_windows).as_dict()
        for spec in job_specs(schedule)
    ]
    held = [
        {
            "credential": h["credential_id"],
            "failures_in_row": h["failures_in_row"],
            "last_failure": h.get("last_finished"),
            "last_error": h.get("last_error"),
        }
        for h in store.credential_holds(schedule.failure_loop)
    ]
    return {
        "now": now.isoformat(),
        "maintenance_windows": [w.model_dump() for w in schedule.maintenance_windows],
        "jobs": jobs,
        "held_credentials": held,
    }


class Scheduler:
    """The jobs of one inventory over one store, run by this process."""

    def __init__(
        self,
        store: Store,
        loaded: LoadedInventory,
        audit: AuditLog,
        *,
        actor: str,
        alerter: Any = None,
        clock: Callable[[], datetime] = utcnow,
        on_job_done: Callable[[str, JobOutcome], None] | None = None,
        specs: list[JobSpec] | None = None,
    ) -> None:
        self.store = store
        self.loaded = loaded
        self.audit = audit
        self.actor = actor
        self.alerter = alerter
        self.clock = clock
        self.on_job_done = on_job_done
        self.schedule = loaded.inventory.schedule
        self.specs = specs if specs is not None else job_specs(self.schedule)
        self.stop = threading.Event()
        self._active: set[threading.Event] = set()
        # reentrant: request_stop runs in a signal handler, on the main thread, which may be
        # inside run_job's locked block (--once runs jobs on the main thread)
        self._active_lock = threading.RLock()
        self.owner = process.me()

    # --- state ------------------------------------------------------------------------

    def state(self, spec: JobSpec, now: datetime | None = None) -> JobState:
        return job_state(
            spec, self.store.schedule_job(spec.name), now or self.clock(),
            self.schedule.maintenance_windows,
        )

    def request_stop(self) -> None:
        """Start nothing more; running jobs finish their current step (safe in a signal
        handler: it only sets events)."""
        self.stop.set()
        with self._active_lock:
            for event in self._active:
                event.set()

    # --- running ----------------------------------------------------------------------

    def run_due(self) -> list[tuple[str, JobOutcome]]:
        """``--once``: every job due now, in order, then return."""
        ran = []
        for spec in self.specs:
            if self.stop.is_set():
                break
            outcome = self.run_job(spec)
            if outcome is not None:
                ran.append((spec.name, outcome))
        return ran

    def run_job(self, spec: JobSpec) -> JobOutcome | None:
        """Run ``spec`` if it is due and this process wins its claim; None when it did not
        run (not due, waiting for a window, or held by another process)."""
        now = self.clock()
        row = self.store.schedule_job(spec.name)
        state = job_state(spec, row, now, self.schedule.maintenance_windows)
        if not state.due(now):
            return None
        if state.state == "interrupted":
            log.warning(
                "%s: taking over from a process that died mid-run", spec.name,
                extra={"job": spec.name, "event": "take-over", "fields": state.owner or {}},
            )
        if not self.store.claim_schedule_job(spec.name, row, self.owner, now):
            log.info(
                "%s: another process started it", spec.name,
                extra={"job": spec.name, "event": "claimed-elsewhere", "fields": {}},
            )
            return None
        run_stop = threading.Event()
        # registered and checked under request_stop's lock: a stop between a bare check and
        # the add would miss this run's event, and a whole playbook would run on after SIGTERM
        with self._active_lock:
            self._active.add(run_stop)
            if self.stop.is_set():
                run_stop.set()
        timer = self._window_timer(spec, now, run_stop)
        log.info("%s: started", spec.name, extra={"job": spec.name, "event": "start",
                                                  "fields": {}})
        ctx = JobContext(self.store, self.loaded, self.audit, self.actor, self.alerter,
                         self.clock, run_stop)
        outcome = JobOutcome("failed", "did not finish")
        try:
            outcome = spec.run(ctx)
        except KeyshiftError as exc:
            outcome = JobOutcome("failed", exc.one_line())
        except Exception as exc:
            outcome = JobOutcome("failed", redact_active(f"{type(exc).__name__}: {exc}"))
            log.exception("%s failed", spec.name, extra={"job": spec.name, "event": "error",
                                                         "fields": {}})
        except BaseException:
            outcome = JobOutcome("stopped", "interrupted")
            raise
        finally:
            if timer is not None:
                timer.cancel()
            with self._active_lock:
                self._active.discard(run_stop)
            finished = self.clock()
            after = job_state(
                spec,
                {"last_started": _ts(now), "last_status": outcome.status},
                finished,
                self.schedule.maintenance_windows,
            )
            self._finish(spec, outcome, finished, after.next_run)
            level = logging.WARNING if outcome.status == "failed" else logging.INFO
            log.log(
                level, "%s: %s%s", spec.name, outcome.status,
                f" ({outcome.error})" if outcome.error else "",
                extra={"job": spec.name, "event": "finish",
                       "fields": {"status": outcome.status, "error": outcome.error,
                                  **_flat(outcome.detail)}},
            )
        if self.on_job_done is not None:
            try:
                self.on_job_done(spec.name, outcome)
            except Exception as exc:  # metrics that cannot be written must not stop jobs
                log.warning("%s: after-job hook failed: %s", spec.name, type(exc).__name__,
                            extra={"job": spec.name, "event": "hook-failed", "fields": {}})
        return outcome

    def _finish(
        self, spec: JobSpec, outcome: JobOutcome, finished: datetime, next_run: datetime
    ) -> None:
        """Record the run and release the claim. This process lives on, so a claim left here
        would read as a live owner's and hold the job until a restart: a failed write (the
        store busy past its timeout) is tried once more, then the claim alone is released."""
        for attempt in (1, 2):
            try:
                self.store.finish_schedule_job(
                    spec.name, self.owner, status=outcome.status, error=outcome.error,
                    detail=outcome.detail, now=finished, next_due=next_run,
                )
                return
            except Exception as exc:
                log.warning(
                    "%s: could not record its finish (attempt %d): %s", spec.name, attempt,
                    redact_active(f"{type(exc).__name__}: {exc}"),
                    extra={"job": spec.name, "event": "finish-not-recorded",
                           "fields": {"attempt": attempt}},
                )
        mine = {"owner_host": self.owner.host, "owner_pid": self.owner.pid,
                "owner_started": self.owner.started}
        try:
            self.store.release_schedule_job(
                spec.name, mine, note=f"ended {outcome.status}; its finish was not recorded",
                now=self.clock(),
            )
        except Exception as exc:
            log.error(
                "%s: its claim could not be released either; it stays held by this process "
                "until it restarts (or keyshift schedule release --job %s once it is stopped)"
                ": %s", spec.name, spec.name, redact_active(f"{type(exc).__name__}: {exc}"),
                extra={"job": spec.name, "event": "claim-stuck", "fields": {}},
            )

    def _window_timer(
        self, spec: JobSpec, now: datetime, run_stop: threading.Event
    ) -> threading.Timer | None:
        """A windowed job is asked to stop when its window closes (it finishes the step it
        is on; the rest waits for the next opening)."""
        if not spec.windowed:
            return None
        end = window_end(self.schedule.maintenance_windows, now)
        if end is None:
            return None
        timer = threading.Timer(max(0.0, (end - now).total_seconds()), run_stop.set)
        timer.daemon = True
        timer.start()
        return timer

    # --- the long-running loop ----------------------------------------------------------

    def serve(self) -> None:
        """Run until ``request_stop()``: each job at its next time, re-planned from the store
        after every run. Returns once the jobs running at the stop have finished."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        sched = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=len(self.specs))},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        for spec in self.specs:
            self._plan(sched, spec)
        sched.start()
        try:
            self.stop.wait()
        finally:
            # no new starts; the running jobs were told to stop after their current step
            sched.shutdown(wait=True)

    def _plan(self, sched: Any, spec: JobSpec) -> None:
        if self.stop.is_set():
            return
        now = self.clock()
        state = self.state(spec, now)
        at = now + min(RECHECK, spec.every) if state.held_elsewhere else state.next_run
        if state.waits_for_window:
            log.info(
                "%s: waits for the maintenance window opening %s", spec.name,
                at.isoformat(timespec="minutes"),
                extra={"job": spec.name, "event": "waits-for-window",
                       "fields": {"at": at.isoformat()}},
            )
        sched.add_job(
            self._fire, "date", run_date=max(at, now), id=spec.name, args=[sched, spec],
            replace_existing=True,
        )

    def _fire(self, sched: Any, spec: JobSpec) -> None:
        if self.stop.is_set():
            return
        try:
            self.run_job(spec)
        finally:
            self._plan(sched, spec)


def _ts(value: datetime) -> str:
    from console.store.rows import ts

    return ts(value) or ""


def _flat(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail's scalar fields, for a log line (nested counts stay in the store)."""
    return {k: v for k, v in detail.items() if isinstance(v, (str, int, float, bool))}
