"""After promote: the run's new status, the revoke stages (each after its grace period), the
check that the issuer refuses the old value, and retire at each target."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from console.crashpoints import crash_point
from console.errors import (
    RotationError,
)
from console.redaction import ValueScope
from console.rotation.run import (
    AWAITING_REVOKE,
    COMPLETED,
    Progress,
    Run,
    RunResult,
    StepFailed,
    done,
    parse_time,
    previous_version_of,
    stage_step,
    value_fingerprint,
)
from rotators.base import (
    Interaction,
    RotatorError,
)


class Finishing:
    def _after_promote(self, run: Run) -> RunResult:
        now = self.clock()
        stages = tuple(run.issuer.revoke_stages())
        revoke_after = now + run.grace
        at_once = run.grace <= timedelta(0)
        # waiting out a grace period, the run has no driver: finish_due takes it over; with
        # none, this process goes straight on and keeps it
        owner = {} if at_once else {"owner_pid": None, "owner_host": None, "owner_started": None}

        def record() -> str | None:  # the promote's rows and the run's new status, together
            finished = self._flush_in(run)
            version = None
            recorded = set()
            for i, spec in enumerate(run.spec.targets):
                handle = run.delivered.get(i) or {}
                version = str(handle.get("version") or "") or version
                if spec.credential_id and spec.credential_id not in recorded:
                    fp = value_fingerprint(run, run.targets[i])
                    new_version = str(handle["version"]) if handle.get("version") else None
                    self.store.record_rotation(spec.credential_id, now, new_version, fp)
                    recorded.add(spec.credential_id)
            if run.cred.id not in recorded and run.cred.kind != "iam-key":
                # the row the run was started from (an access key row is replaced, not rotated)
                self.store.record_rotation(run.cred.id, now, None, None)
            self.store.set_run_status(
                run.run_id,
                AWAITING_REVOKE,
                error=None,
                pending_version=version,
                previous_version=previous_version_of(run),
                revoke_after=revoke_after,
                **owner,
            )
            self.audit.append(
                run.actor,
                "rotation.outcome",
                run.cred.id,
                {
                    "run_id": run.run_id,
                    "status": AWAITING_REVOKE,
                    "revoke_after": revoke_after.isoformat(),
                    "stages": list(stages),
                },
            )
            return finished

        finished = self.store.atomically(record)
        if finished:
            crash_point(finished)
        if at_once:
            return self._phase2(run, force=True)
        run.emit("revoke", "scheduled", f"after {revoke_after.isoformat(timespec='seconds')}")
        return self._result(self._run_row(run.run_id))

    def _finish(
        self,
        row: dict,
        actor: str,
        progress: Progress | None,
        interaction: Interaction | None,
        *,
        force: bool,
        now: datetime | None = None,
    ) -> RunResult:
        try:
            self._take_over(row, actor)
        except RotationError as exc:
            return self._result(row, error=exc.one_line())
        cred = self._credential(row["credential_id"])
        spec = self._spec_of(row, cred)
        grace = timedelta(seconds=float((row.get("plan") or {}).get("grace_seconds") or 0))
        with ValueScope(f"run {row['id']}") as scope:
            run = self._new_run(row["id"], cred, spec, actor, grace, progress, interaction, scope)
            self._load_journal(run)
            return self._phase2(run, force=force, now=now)

    def _phase2(self, run: Run, *, force: bool, now: datetime | None = None) -> RunResult:
        """Revoke stages (each after its grace period), the check that the issuer refuses the
        old value, and retire at each target; then the run is completed."""
        try:
            return self._phase2_steps(run, force=force, now=now)
        finally:
            self._flush(run)
            row = self._run_row(run.run_id)
            if row["status"] == AWAITING_REVOKE and row.get("owner_pid"):
                self.store.set_run_status(
                    run.run_id, AWAITING_REVOKE, owner_pid=None, owner_host=None,
                    owner_started=None,
                )

    def _phase2_steps(self, run: Run, *, force: bool, now: datetime | None) -> RunResult:
        steps = self._journal(run)
        stages = tuple(run.issuer.revoke_stages())
        old = {**run.old_handle, "new": run.new_handle or {}}
        # an old value still readable where it was delivered, for the check after revoke
        if run.old_values == {} or not any(run.old_values.values()):
            self._recover_old_values(run)
        # the issuer still took the old value after the last stage: that stage runs again
        again = (steps.get("check") or {}).get("status") == "failed"
        for k, stage in enumerate(stages):
            name = stage_step(stage)
            if done(steps, name) and not (again and k == len(stages) - 1):
                continue
            row = self._run_row(run.run_id)
            due = parse_time(row.get("revoke_after"))
            # a later stage waits a grace period of its own after the previous one
            if (
                k > 0
                and done(steps, stage_step(stages[k - 1]))
                and not force
                and due is not None
                and due > (now or self.clock())
            ):
                run.emit(name, "scheduled", f"after {due.isoformat(timespec='seconds')}")
                return self._result(row)
            try:
                self._step(run, name, lambda s=stage: run.issuer.revoke(run.info, s, old),
                           message=lambda _, s=stage: f"old value: {s} done")
            except StepFailed as exc:
                return self._revoke_failed(run, exc)
            steps = self._journal(run)
            if k + 1 < len(stages) and not force and run.grace > timedelta(0):
                next_due = (now or self.clock()) + run.grace
                with self.store.transaction():
                    self.store.set_run_status(run.run_id, AWAITING_REVOKE, revoke_after=next_due)
                    self.audit.append(
                        run.actor, "rotation.outcome", run.cred.id,
                        {"run_id": run.run_id, "status": AWAITING_REVOKE, "stage": stage,
                         "revoke_after": next_due.isoformat()},
                    )
                run.emit(stage_step(stages[k + 1]), "scheduled",
                         f"after {next_due.isoformat(timespec='seconds')}")
                return self._result(self._run_row(run.run_id))
        if stages and not done(steps, "check"):
            try:
                self._step(run, "check", lambda: self._check_refused(run),
                           detail=lambda d: d, message=lambda d: d["says"])
            except StepFailed as exc:
                return self._revoke_failed(run, exc)
        for i, target in enumerate(run.targets):
            name = f"retire:{i}"
            if done(steps, name):
                continue
            try:
                self._step(run, name, lambda t=target, i=i: t.retire(run.delivered.get(i, {})),
                           message=lambda _, t=target: f"{t.where()}: old value dropped")
            except StepFailed as exc:
                return self._revoke_failed(run, exc)

        def complete() -> str | None:
            finished = self._flush_in(run)
            self.store.set_run_status(
                run.run_id, COMPLETED, error=None, owner_pid=None, owner_host=None,
                owner_started=None,
            )
            self.audit.append(
                run.actor,
                "rotation.outcome",
                run.cred.id,
                {"run_id": run.run_id, "status": COMPLETED, "revoked": list(stages)},
            )
            return finished

        finished = self.store.atomically(complete)
        if finished:
            crash_point(finished)
        return self._result(self._run_row(run.run_id))

    def _check_refused(self, run: Run) -> dict[str, Any]:
        old = self._merge([v for v in run.old_values.values() if v])
        if not old:
            return {"still_valid": None,
                    "says": "not checked: the old value is held nowhere keyshift can read"}
        verdict = run.issuer.still_valid(run.info, old)
        if verdict:
            raise RotatorError(f"{run.spec.issuer_label} still accepts the old value after revoke")
        if verdict is None:
            return {"still_valid": None, "says": "not checked: the issuer cannot tell"}
        return {"still_valid": False, "says": "the issuer refuses the old value"}

    def _revoke_failed(self, run: Run, exc: StepFailed) -> RunResult:
        self._flush(run)
        status_error = None if exc.waiting else f"{exc.step} failed: {exc.message}"
        with self.store.transaction():
            self.store.set_run_status(run.run_id, AWAITING_REVOKE, error=status_error)
            self.audit.append(
                run.actor,
                "rotation.outcome",
                run.cred.id,
                {"run_id": run.run_id, "status": AWAITING_REVOKE,
                 ("waiting" if exc.waiting else "error"): exc.message},
            )
        result = self._result(self._run_row(run.run_id))
        if exc.waiting:
            result.waiting = exc.message
        return result
