"""One step of a run, journaled: started before it runs, done (with its audit entry, committed
together with the next step's start) or failed after; retries with backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn, TypeVar

from console.crashpoints import crash_point
from console.errors import (
    KeyshiftError,
    NotFoundError,
)
from console.model import StepStatus
from console.rotation.run import (
    AWAITING_REVOKE,
    Run,
    RunResult,
    StepFailed,
    audit_detail,
    parse_time,
)
from rotators.base import (
    NeedsPerson,
    RotatorError,
)

T = TypeVar("T")


class JournalSteps:
    def _step(
        self,
        run: Run,
        step: str,
        fn: Callable[[], T],
        *,
        detail: Callable[[T], dict] | None = None,
        message: Callable[[T], str] | None = None,
    ) -> T:
        run.emit(step, "started")
        run.ctx.step = step
        finished, step_id = self.store.atomically(
            lambda: (self._flush_in(run), self.store.start_step(run.run_id, step))
        )
        if finished:
            crash_point(finished)
        crash_point(f"{step}:started")
        attempt = 0
        while True:
            attempt += 1
            try:
                out = fn()
                break
            except NeedsPerson as exc:
                self._step_failed(run, step, step_id, str(exc), attempt, waiting=True)
            except RotatorError as exc:
                if exc.retryable and attempt < self.retry.attempts:
                    delay = self.retry.delay(attempt)
                    run.emit(step, "retrying", f"{run.ctx.scope.redact(str(exc))}; retrying in "
                                               f"{delay:.1f} s")
                    self.sleep(delay)
                    continue
                self._step_failed(run, step, step_id, str(exc), attempt)
            except KeyshiftError as exc:
                self._step_failed(run, step, step_id, exc.one_line(), attempt)
            except Exception as exc:  # a fault in a (maybe third-party) plug-in: journal it
                self._step_failed(run, step, step_id, f"{type(exc).__name__}: {exc}", attempt)
        crash_point(f"{step}:ran")
        run.pending = (step_id, step, detail(out) if detail else {}, attempt)
        run.emit(step, "done", message(out) if message else "")
        return out

    def _flush_in(self, run: Run) -> str | None:
        """Journal the last step as done (inside the caller's transaction); its name."""
        if run.pending is None:
            return None
        step_id, step, step_detail, attempts = run.pending
        run.pending = None
        self.store.finish_step(step_id, StepStatus.done, detail=step_detail, attempts=attempts)
        self.audit.append(
            run.actor,
            "rotation.step",
            run.cred.id,
            {"run_id": run.run_id, "step": step, "status": "done", **audit_detail(step_detail)},
        )
        return step

    def _flush(self, run: Run) -> None:
        if run.pending is None:
            return
        finished = self.store.atomically(lambda: self._flush_in(run))
        if finished:
            crash_point(finished)

    def _journal(self, run: Run) -> dict[str, dict]:
        """The run's journal, its last step's "done" written first."""
        self._flush(run)
        return self._latest(run.run_id)

    def _step_failed(
        self, run: Run, step: str, step_id: int, error: str, attempts: int, waiting: bool = False
    ) -> NoReturn:
        error = run.ctx.scope.redact(error)

        def journal() -> None:
            self._flush_in(run)
            self.store.finish_step(step_id, StepStatus.failed, error=error, attempts=attempts)
            self.audit.append(
                run.actor,
                "rotation.step",
                run.cred.id,
                {"run_id": run.run_id, "step": step, "status": "failed", "error": error},
            )

        self.store.atomically(journal)
        run.emit(step, "waiting" if waiting else "failed", error)
        raise StepFailed(step, error, waiting=waiting)

    def _run_row(self, run_id: str) -> dict:
        row = self.store.get_rotation_run(run_id)
        if row is None:
            found = self.store.find_rotation_runs(run_id, limit=2) if len(run_id) >= 4 else []
            if len(found) == 1:
                return found[0]
            raise NotFoundError(f"no rotation run {run_id!r}", hint="keyshift runs lists them")
        return row

    def _latest(self, run_id: str) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for row in self.store.rotation_steps(run_id):
            latest[row["step"]] = row
        return latest

    def _result(self, row: dict, error: str | None = None) -> RunResult:
        waiting = None
        if row.get("status") == AWAITING_REVOKE:
            due = parse_time(row.get("revoke_after"))
            waiting = f"revoke after {due.isoformat(timespec='seconds')}" if due else None
        return RunResult(
            run_id=row.get("id", ""),
            credential_id=row.get("credential_id", ""),
            rotator=row.get("rotator", ""),
            status=row.get("status", ""),
            version=row.get("pending_version"),
            previous_version=row.get("previous_version"),
            revoke_after=parse_time(row.get("revoke_after")),
            error=error or row.get("error"),
            waiting=waiting,
        )
