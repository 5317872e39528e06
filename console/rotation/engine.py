"""The rotation engine: one issuer and its targets, composed into journaled steps.

A run goes::

    identify -> issue -> deliver:<i>... -> verify -> promote:<i>...      (phase 1)
    [grace] -> revoke:<stage>... -> check -> retire:<i>...              (phase 2)

and, when a phase-1 step fails for good, ``discard`` (the issuer invalidates the new value)
and ``restore:<i>`` (each target gets the old value back), newest delivery first.

The journal: every step is a row written before it runs (``started``) and after it
(``done``/``failed``), and each ``done``/``failed`` commits together with its audit entry.
Step rows carry handles (versions, accessors, key ids) and fingerprints, never a value.

Claims: a run claims its subject in the store (a unique index; console/store/runs.py) before
any step, so two processes (two consoles, a console and a scheduler) never rotate one thing
at once; the loser is refused before it touches anything. A run records its owner (host, pid,
process start time); a run whose owner died is taken over by compare-and-swap, so two
resumers of one crashed run never both drive it.

Crashes: values live only in memory, so a resumed run that has not promoted finds the new
value again where it was delivered (by fingerprint) and carries on, or, if it was never
delivered anywhere, discards it at the issuer and rolls back. After promote nothing needs the
new value: revoke and retire only need handles.

Retries: a ``retryable`` RotatorError (a 429, a 503, a sealed Vault, a network error) is
retried with bounded, jittered backoff; only a final failure counts, and only a failure
before promote rolls back. A failure after promote leaves the run ``awaiting-revoke`` with the
error, loudly: the old value stays valid until a later ``finish_due`` revokes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from console import process
from console.errors import (
    KeyshiftError,
    NotFoundError,
    ReadOnlyError,
    RotatedMeanwhile,
    RotationError,
    UsageError,
)
from console.model import TERMINAL_RUN_STATUSES, Credential, RunStatus
from console.redaction import ValueScope
from console.rotation import legacy
from console.rotation.context import Clients, RunContext
from console.rotation.finish import Finishing
from console.rotation.journal import JournalSteps
from console.rotation.plan import RotationPlan, compose_steps
from console.rotation.recovery import Recovery
from console.rotation.run import (
    ABANDONED,
    AWAITING_REVOKE,
    MAX_GRACE,
    ROLLBACK_FAILED,
    ROLLED_BACK,
    Planned,
    Progress,
    RetryPolicy,
    RotationFailed,
    Run,
    RunResult,
    StepFailed,
    credential_info,
    done,
    fingerprints_of,
    in_phase1,
    parse_time,
    parts_for,
    utcnow,
    where_of,
)
from console.rotation.specs import Spec, resolve
from console.store.runs import ClaimHeld
from rotators import registry
from rotators.base import (
    Interaction,
    Issued,
    PartPlan,
    Refused,
    RotatorError,
    Value,
    VerifyFailed,
)

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store


class RotationEngine(JournalSteps, Recovery, Finishing):
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        loaded: LoadedInventory,
        *,
        clock: Callable[[], datetime] | None = None,
        read_only: bool = False,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.audit = audit
        self.loaded = loaded
        self.clock = clock or utcnow
        self.read_only = read_only
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clients = Clients(loaded)

    # --- planning ---------------------------------------------------------------------------

    def spec_for(self, cred_id: str) -> Spec:
        return resolve(self._credential(cred_id), self.loaded, self.store)

    def plan(self, cred_id: str, *, grace: timedelta | None = None) -> RotationPlan:
        """What rotating ``cred_id`` would do, checked against the servers. Changes nothing."""
        cred = self._credential(cred_id)
        spec = resolve(cred, self.loaded, self.store)
        with ValueScope(f"plan {cred.id}") as scope:
            ctx = RunContext(self.clients, "plan", self.clock, None, scope)
            return self._plan(cred, spec, self._grace(spec, grace), ctx).plan

    def _plan(self, cred: Credential, spec: Spec, grace: timedelta, ctx: RunContext) -> Planned:
        """The plan, and what it built and read on the way: the plug-ins, what consumers read
        now and the old value's handle at the issuer (a rotation carries on with them)."""
        plan = RotationPlan(
            credential=cred.id,
            subject=spec.subject,
            rotator=spec.legacy or str(spec.issuer.get("type", "unknown")),
            issuer=spec.issuer_label,
            origin=spec.origin,
            targets=[
                {"type": t.type, "where": where_of(t), "credential": t.credential_id,
                 "place": t.place}
                for t in spec.targets
            ],
            grace_seconds=grace.total_seconds(),
            warnings=list(spec.warnings),
        )
        planned = Planned(plan)
        if cred.gone_at or cred.status == "gone":
            plan.refused = (
                f"{cred.id} is gone from {cred.source} (since {cred.gone_at:%Y-%m-%d}): "
                "there is nothing to rotate"
                if cred.gone_at
                else f"{cred.id} is gone from {cred.source}"
            )
            return planned
        if spec.problem:
            plan.refused = spec.problem
            return planned
        active = self.store.active_run(spec.subject)
        if active:
            plan.refused = self._claim_message(spec.subject, active)
        scope = ctx.scope
        try:
            issuer, targets = self._plugins(spec, cred, ctx)
            parts = [self._plan_part(p, cred) for p in (issuer, *targets)]
        except Refused as exc:
            plan.refused = plan.refused or scope.redact(str(exc))
            return planned
        except RotatorError as exc:
            plan.refused = plan.refused or f"cannot plan: {scope.redact(str(exc))}"
            return planned
        planned.issuer, planned.targets = issuer, targets
        plan.manual = bool(getattr(issuer, "manual", False))
        plan.revoke_stages = list(issuer.revoke_stages())
        plan.steps = compose_steps(parts[0], parts[1:])
        for part in parts:
            plan.needs += part.needs
            plan.warnings += part.warnings
        refused = next((p.refused for p in parts if p.refused), None)
        plan.refused = plan.refused or refused
        plan.downtime = self._downtime(spec, issuer, targets, parts)
        if plan.refused is None:
            try:
                planned.old_values = {
                    i: self._read(issuer, t, scope) for i, t in enumerate(targets)
                }
                planned.old_handle = issuer.identify(
                    credential_info(cred), self._merge(list(planned.old_values.values()))
                )
            except Refused as exc:
                plan.refused = scope.redact(str(exc))
            except RotatorError as exc:
                plan.refused = f"cannot plan: {scope.redact(str(exc))}"
        return planned

    # --- rotating ---------------------------------------------------------------------------

    def rotate(
        self,
        cred_id: str,
        *,
        actor: str,
        grace: timedelta | None = None,
        progress: Progress | None = None,
        interaction: Interaction | None = None,
        playbook_run_id: str | None = None,
        not_rotated_since: datetime | None = None,
    ) -> RunResult:
        """Rotate ``cred_id``; returns once the new value is verified and promoted (and, with a
        zero grace period, the old one revoked). Raises RotationFailed after a rollback.
        ``playbook_run_id``: the playbook run this rotation is a step of (linked with the
        claim, in its transaction). ``not_rotated_since``: when the caller chose this
        credential; a run of it started since then (another scheduler, a console) makes this
        one refuse with RotatedMeanwhile, checked inside the claim's transaction."""
        self._writable(f"rotate {cred_id}")
        grace = self._check_grace(grace)
        cred = self._credential(cred_id)
        spec = resolve(cred, self.loaded, self.store)
        grace = self._grace(spec, grace)
        active = self.store.active_run(spec.subject)
        if active and active["status"] == AWAITING_REVOKE:
            due = parse_time(active.get("revoke_after"))
            if due is None or due <= self.clock():
                # the previous rotation's grace is over: finish it first, then rotate anew
                self._finish(active, actor, progress, interaction, force=False)
                active = self.store.active_run(spec.subject)
        if active:
            raise RotationError(
                self._claim_message(spec.subject, active), hint=self._claim_hint(active)
            )
        with ValueScope(f"run of {cred.id}") as scope:
            ctx = RunContext(self.clients, "", self.clock, interaction, scope)
            planned = self._plan(cred, spec, grace, ctx)
            plan = planned.plan
            if plan.refused:
                raise RotationError(f"cannot rotate {cred_id}: {plan.refused}", hint=plan.origin)
            if plan.manual and interaction is None:
                raise RotationError(
                    f"{cred_id} is rotated by a person ({plan.issuer}): it needs a terminal",
                    hint="run keyshift rotate in a terminal, or rotate it from the TUI",
                )
            if spec.legacy:
                self._preflight(spec)  # a whole rotator's plan may not have asked any server
            plan_dict, owner = plan.as_dict(), process.me()

            def claim() -> str:  # the claim and its audit entry, together
                if not_rotated_since is not None:
                    latest = self.store.latest_rotation(spec.subject)
                    began = parse_time(latest.get("created_at")) if latest else None
                    if latest and began and began > not_rotated_since:
                        raise RotatedMeanwhile(
                            f"{cred_id} was rotated by run {latest['id'][:12]} "
                            f"({latest['status']}) after it was chosen for this rotation",
                            run_id=latest["id"],
                        )
                run_id = self.store.claim_run(
                    subject=spec.subject,
                    credential_id=cred.id,
                    rotator=plan.rotator,
                    plan=plan_dict,
                    actor=actor,
                    owner=owner,
                )
                if playbook_run_id is not None:
                    self.store.link_rotation_to_playbook(run_id, playbook_run_id)
                self.audit.append(
                    actor,
                    "rotation.start",
                    cred.id,
                    {
                        "run_id": run_id,
                        "subject": spec.subject,
                        "issuer": plan.issuer,
                        "targets": [t["where"] for t in plan.targets],
                        "grace_seconds": grace.total_seconds(),
                        **({"playbook_run_id": playbook_run_id} if playbook_run_id else {}),
                    },
                )
                return run_id

            try:
                run_id = self.store.atomically(claim)
            except ClaimHeld as exc:
                raise RotationError(
                    self._claim_message(spec.subject, exc.holder),
                    hint=self._claim_hint(exc.holder),
                ) from None
            scope.name = f"run {run_id}"
            ctx.run_id = run_id
            run = Run(run_id, cred, credential_info(cred), spec, planned.issuer,
                       planned.targets, ctx, actor, grace, progress)
            # what the plan read: consumers' current values and the old value's handle
            run.old_values = dict(planned.old_values)
            run.old_handle = dict(planned.old_handle)
            return self._drive(run, read_before=True)

    def resume(
        self,
        run_id: str,
        *,
        actor: str,
        progress: Progress | None = None,
        interaction: Interaction | None = None,
    ) -> RunResult:
        """Carry an interrupted run on from its first unfinished step (or roll it back, if its
        new value was lost before it was delivered). A finished run is returned as it is."""
        self._writable(f"resume rotation {run_id}")
        row = self._run_row(run_id)
        if row["status"] in TERMINAL_RUN_STATUSES:
            return self._result(row)
        if row["status"] == AWAITING_REVOKE and not self._interrupted_after_promote(row):
            return self._result(row)
        with self._reopened(row, actor, "rotation.resume", progress, interaction) as run:
            if row["status"] == AWAITING_REVOKE:
                return self._phase2(run, force=False)
            return self._drive(run)

    @contextmanager
    def _reopened(
        self,
        row: dict,
        actor: str,
        action: str,
        progress: Progress | None,
        interaction: Interaction | None,
    ) -> Iterator[Run]:
        """A stopped run taken over by this process (audited as ``action``), its journal
        loaded, inside its own value scope."""
        run_id = row["id"]
        self._take_over(row, actor)
        cred = self._credential(row["credential_id"])
        spec = self._spec_of(row, cred)
        grace = timedelta(seconds=float((row.get("plan") or {}).get("grace_seconds") or 0))
        self.audit.append(actor, action, cred.id, {"run_id": run_id, "from": row["status"]})
        with ValueScope(f"run {run_id}") as scope:
            run = self._new_run(run_id, cred, spec, actor, grace, progress, interaction, scope)
            self._load_journal(run)
            yield run

    def resume_unfinished(
        self,
        actor: str,
        progress: Progress | None = None,
        interaction: Interaction | None = None,
    ) -> list[RunResult]:
        """Resume every run a crash left behind. Runs waiting out their grace period are left
        to ``finish_due``; runs whose owner still runs are left alone."""
        self._writable("resume unfinished rotations")
        results: list[RunResult] = []
        for row in self.store.unfinished_rotation_runs():
            if self._owner_alive(row):
                continue
            if row["status"] == AWAITING_REVOKE and not self._interrupted_after_promote(row):
                continue
            try:
                results.append(
                    self.resume(row["id"], actor=actor, progress=progress, interaction=interaction)
                )
            except RotationFailed as exc:
                results.append(exc.result)
            except RotationError as exc:
                results.append(self._result(self._run_row(row["id"]), error=exc.one_line()))
        return results

    def finish_due(
        self,
        *,
        actor: str,
        now: datetime | None = None,
        progress: Progress | None = None,
        interaction: Interaction | None = None,
    ) -> list[RunResult]:
        """Run the revoke stages whose grace period has passed (and retire what they kept).
        A failure is in the result's ``error``, never silent; the run stays awaiting-revoke
        and the next call tries again."""
        self._writable("revoke rotated credentials")
        now = now or self.clock()
        results = []
        for row in self.store.rotation_runs(status=AWAITING_REVOKE, limit=1_000_000):
            due = parse_time(row.get("revoke_after"))
            if due is not None and due > now:
                continue
            if self._owner_alive(row):
                continue  # another process is finishing it right now
            results.append(self._finish(row, actor, progress, interaction, force=False, now=now))
        return results

    def finish_run(
        self,
        run_id: str,
        *,
        actor: str,
        now_regardless: bool = False,
        progress: Progress | None = None,
        interaction: Interaction | None = None,
    ) -> RunResult:
        """Finish one awaiting-revoke run: when due, or at once with ``now_regardless``."""
        self._writable(f"finish rotation {run_id}")
        row = self._run_row(run_id)
        if row["status"] != AWAITING_REVOKE:
            return self._result(row)
        return self._finish(row, actor, progress, interaction, force=now_regardless)

    def roll_back(
        self,
        run_id: str,
        *,
        actor: str,
        progress: Progress | None = None,
        interaction: Interaction | None = None,
    ) -> RunResult:
        """Undo a run that stopped before promote (interrupted, or its rollback failed):
        discard its new value at the issuer and put the old value back wherever it was
        delivered. A promoted run is not rolled back: its consumers use the new value and
        the old one is revoked at the end of the grace period (finish it, or abandon it)."""
        self._writable(f"roll back rotation {run_id}")
        row = self._run_row(run_id)
        if row["status"] in TERMINAL_RUN_STATUSES:
            return self._result(row)
        if row["status"] == AWAITING_REVOKE or done(self._latest(run_id), "promote"):
            raise RotationError(
                f"run {run_id} has promoted its new value: consumers use it now",
                hint="let it finish (keyshift runs finish), or abandon it",
            )
        with self._reopened(row, actor, "rotation.rollback", progress, interaction) as run:
            try:
                return self._rollback(run, "rollback", f"rolled back by {actor}")
            except RotationFailed as exc:
                if exc.result is not None and exc.result.status == RunStatus.rolled_back.value:
                    return exc.result
                raise

    def abandon(self, run_id: str, *, actor: str, reason: str) -> RunResult:
        """Give up on a run that cannot finish (audited): it releases its claim, and nothing at
        the issuer or the targets is touched; what it may have left is in the audit entry."""
        self._writable(f"abandon rotation {run_id}")
        if not reason.strip():
            raise UsageError("abandoning a run needs a reason", hint="--reason 'why'")
        row = self._run_row(run_id)
        if row["status"] in TERMINAL_RUN_STATUSES:
            raise RotationError(f"run {run_id} is already {row['status']}")
        if self._owner_alive(row):
            raise RotationError(
                f"run {run_id} is being driven by process {row.get('owner_pid')} right now",
                hint="wait for it, or stop that process first",
            )
        steps = self.store.rotation_steps(run_id)
        left = [
            {"step": s["step"], "detail": s.get("detail")}
            for s in steps
            if s["step"].startswith(("issue", "deliver")) and s["status"] == "done"
        ]
        with self.store.transaction():
            self.store.set_run_status(
                run_id, ABANDONED, error=f"abandoned by {actor}: {reason}", owner_pid=None
            )
            self.audit.append(
                actor,
                "rotation.abandon",
                row["credential_id"],
                {"run_id": run_id, "from": row["status"], "reason": reason, "left": left},
            )
        return self._result(self._run_row(run_id))

    def runs(self, credential_id: str | None = None, limit: int = 50) -> list[RunResult]:
        return [self._result(r) for r in self.store.rotation_runs(credential_id, limit=limit)]

    # --- driving a run -------------------------------------------------------------------------

    def _drive(self, run: Run, *, read_before: bool = False) -> RunResult:
        steps = self._latest(run.run_id)
        failed = [n for n, r in steps.items() if r["status"] == "failed" and in_phase1(n)]
        if failed or "discard" in steps or any(n.startswith("restore:") for n in steps):
            row = self._run_row(run.run_id)
            return self._rollback(run, failed[0] if failed else "rollback",
                                  row.get("error") or "interrupted")
        try:
            if not done(steps, "identify"):
                self._identify(run, read_before)
            if not done(steps, "issue"):
                if "issue" in steps:
                    # killed while minting: the value is gone with the process; whatever the
                    # issuer minted is found by the run id and discarded
                    raise StepFailed("issue", "interrupted while issuing the new value")
                self._issue(run)
            for i, target in enumerate(run.targets):
                name = f"deliver:{i}"
                if done(steps, name):
                    continue
                value = self._new_value(run, name)
                handle = self._step(run, name, lambda t=target, v=value: t.deliver(parts_for(v, t)),
                                    detail=lambda h: {"handle": h},
                                    message=lambda _h, t=target: f"delivered to {t.where()}")
                run.delivered[i] = handle
            if not done(steps, "verify"):
                value = self._new_value(run, "verify")
                self._step(run, "verify", lambda: self._verify(run, value),
                           message=lambda _: "the new value works")
            for i, target in enumerate(run.targets):
                name = f"promote:{i}"
                if not done(steps, name):
                    self._step(run, name, lambda t=target, i=i: t.promote(run.delivered.get(i, {})),
                               message=lambda _, t=target: f"{t.where()} serves it now")
            if hasattr(run.issuer, "promote") and not done(steps, "promote"):
                self._step(run, "promote", lambda: run.issuer.promote(run.info, run.new_handle))
        except StepFailed as exc:
            return self._rollback(run, exc.step, exc.message)
        return self._after_promote(run)

    def _identify(self, run: Run, read_before: bool) -> None:
        """Journal what consumers read now (by fingerprint) and the old value's handle: what
        the plan just read, or, for a resumed run, read again."""

        def identify() -> dict[str, Any]:
            if not read_before:
                for i, target in enumerate(run.targets):
                    run.old_values[i] = self._read(run.issuer, target, run.ctx.scope)
                run.old_handle = run.issuer.identify(
                    run.info, self._merge(list(run.old_values.values()))
                )
            run.old_fps = {i: fingerprints_of(run, v) for i, v in run.old_values.items() if v}
            return {"old": run.old_handle, "old_fingerprints": run.old_fps}

        self._step(run, "identify", identify, detail=lambda d: d)

    def _issue(self, run: Run) -> None:
        def issue() -> Issued:
            issued = run.issuer.issue(run.info, run.old_handle)
            run.new_value = issued.value
            run.new_handle = issued.handle
            run.new_fps = fingerprints_of(run, issued.value)
            if run.new_fps and run.new_fps == self._merged_old_fps(run):
                raise VerifyFailed("the new value is the old one")
            return issued

        self._step(
            run,
            "issue",
            issue,
            detail=lambda issued: {"handle": issued.handle, "fingerprints": run.new_fps},
            message=lambda _: "new value issued",
        )

    def _verify(self, run: Run, value: Value) -> None:
        run.issuer.verify(run.info, Issued(value, run.new_handle or {}))
        for i, target in enumerate(run.targets):
            staged = target.read_delivered(run.delivered.get(i, {}))
            expected = {p: fp for p, fp in run.new_fps.items() if p in target.fields}
            if not staged or any(
                run.ctx.fingerprint(staged.get(p, "")) != fp for p, fp in expected.items()
            ):
                raise VerifyFailed(f"{target.where()} does not hold the new value")

    def _rollback(self, run: Run, step: str, reason: str) -> RunResult:
        reason = reason.removeprefix(f"{step} failed: ")
        steps = self._journal(run)
        try:
            if not done(steps, "discard"):
                self._step(run, "discard",
                           lambda: run.issuer.discard(run.info, run.new_handle, run.old_handle),
                           message=lambda _: "new value discarded at the issuer")
            for i in sorted(self._touched(run, steps), reverse=True):
                name = f"restore:{i}"
                if done(steps, name) or self._still_old(run, i, steps):
                    continue
                target = run.targets[i]
                old = self._old_for(run, i)
                self._step(run, name, lambda t=target, i=i, o=old: t.rollback(run.delivered.get(i),
                                                                              o),
                           message=lambda _, t=target: f"{t.where()} holds the old value again")
        except StepFailed as exc:
            self._flush(run)
            error = f"{step} failed: {reason}; rollback failed: {exc.message}"
            with self.store.transaction():
                self.store.set_run_status(run.run_id, ROLLBACK_FAILED, error=error,
                                          owner_pid=None, owner_host=None, owner_started=None)
                self.audit.append(run.actor, "rotation.outcome", run.cred.id,
                                  {"run_id": run.run_id, "status": ROLLBACK_FAILED,
                                   "error": error})
            raise RotationFailed(
                f"rotation of {run.cred.id} failed at {step} and could not be rolled back: "
                f"{exc.message}",
                hint=f"fix the cause, then: keyshift rotate --resume (run {run.run_id}); "
                f"or keyshift runs abandon {run.run_id[:12]} --reason ...",
                result=self._result(self._run_row(run.run_id)),
            ) from None
        error = f"{step} failed: {reason}"
        self._flush(run)
        with self.store.transaction():
            self.store.set_run_status(run.run_id, ROLLED_BACK, error=error, owner_pid=None,
                                      owner_host=None, owner_started=None)
            self.audit.append(run.actor, "rotation.outcome", run.cred.id,
                              {"run_id": run.run_id, "status": ROLLED_BACK, "error": error})
        raise RotationFailed(
            f"rotation of {run.cred.id} failed at {step} ({reason}); rolled back: the old value "
            "is current and still valid",
            hint=f"run {run.run_id[:12]}; its steps: keyshift runs --credential {run.cred.id}",
            result=self._result(self._run_row(run.run_id)),
        )

    # --- setup -----------------------------------------------------------------------------------

    def _new_run(
        self,
        run_id: str,
        cred: Credential,
        spec: Spec,
        actor: str,
        grace: timedelta,
        progress: Progress | None,
        interaction: Interaction | None,
        scope: ValueScope,
    ) -> Run:
        ctx = RunContext(self.clients, run_id, self.clock, interaction, scope)
        issuer, targets = self._plugins(spec, cred, ctx)
        return Run(run_id, cred, credential_info(cred), spec, issuer, targets, ctx, actor, grace,
                    progress)

    def _plugins(self, spec: Spec, cred: Credential, ctx: RunContext) -> tuple[Any, list[Any]]:
        try:
            if spec.legacy:
                return legacy.build(registry.of_role(spec.legacy, "rotator"), ctx), []
            issuer_cls = registry.of_role(str(spec.issuer["type"]), "issuer")
            targets = [registry.of_role(t.type, "target")(t.spec, t.fields, ctx)
                       for t in spec.targets]
        except LookupError as exc:
            raise RotationError(str(exc), hint="install the plug-in's package") from None
        if spec.issuer.get("type") == "provider" and spec.issuer.get("provider") == "unknown":
            pass  # the manual checklist with no provider: still the provider issuer
        issuer = spec.issuer
        if issuer.get("type") == "vault-token":
            # a token Vault has revoked cannot be looked up: what keyshift last saw of it
            from console.rotation.remembered import remembered_token

            issuer = {**issuer, "remembered": remembered_token(self.store, self.loaded, spec)}
        return issuer_cls(issuer, ctx), targets

    def _spec_of(self, row: dict, cred: Credential) -> Spec:
        """The declaration the run was planned with; refused if the inventory changed it (a
        run's journal only makes sense against the issuer and targets it started with)."""
        spec = resolve(cred, self.loaded, self.store)
        planned = [t.get("place") for t in (row.get("plan") or {}).get("targets", [])]
        if spec.subject != row.get("subject") or planned != [t.place for t in spec.targets]:
            raise RotationError(
                f"run {row['id'][:12]} was planned with another declaration of {cred.id} than "
                "the inventory has now",
                hint=f"put the inventory back as it was, or keyshift runs abandon "
                f"{row['id'][:12]} --reason ...",
            )
        return spec

    def _take_over(self, row: dict, actor: str) -> None:
        if row.get("owner_pid") and self._owner_alive(row):
            raise RotationError(
                f"run {row['id']} is being driven by process {row['owner_pid']} on "
                f"{row.get('owner_host')}",
                hint="wait for it to finish",
            )
        if not self.store.take_over(row["id"], row, process.me()):
            raise RotationError(
                f"run {row['id']} was taken over by another process just now",
                hint="see it with keyshift runs",
            )
        if row.get("owner_pid"):
            self.audit.append(
                actor,
                "rotation.takeover",
                row["credential_id"],
                {"run_id": row["id"], "dead_owner": {"host": row.get("owner_host"),
                                                    "pid": row.get("owner_pid")}},
            )

    def _preflight(self, spec: Spec) -> None:
        """One authenticated call per source involved, before a run exists: a server that is
        down, or a token it refuses, is a plain error rather than a failed run."""
        sources = {t.spec.get("source") for t in spec.targets} | {spec.issuer.get("source")}
        for source in sorted(s for s in sources if s):
            cfg = self.loaded.source(str(source))
            try:
                if cfg.type in ("vault", "openbao"):
                    self.clients.vault(str(source)).auth.token.lookup_self()
                elif cfg.type == "aws":
                    self.clients._aws_kwargs(str(source))
            except KeyshiftError:
                raise
            except Exception as exc:
                raise RotationError(
                    f"{source}: cannot reach it or its token is refused ({type(exc).__name__})",
                    hint="check `keyshift sandbox status` or the source's address and token",
                ) from None

    # --- small helpers ----------------------------------------------------------------------

    def _writable(self, action: str) -> None:
        if self.read_only:
            raise ReadOnlyError(action)

    def _credential(self, cred_id: str) -> Credential:
        cred = self.store.get_credential(cred_id)
        if cred is None:
            raise NotFoundError(f"no credential {cred_id!r}", hint="run keyshift sync, then ls")
        return cred

    def _interrupted_after_promote(self, row: dict) -> bool:
        steps = self._latest(row["id"])
        return any(
            r["status"] == "started" and n.split(":")[0] in ("revoke", "check", "retire")
            for n, r in steps.items()
        )

    @staticmethod
    def _owner_alive(row: dict) -> bool:
        if not row.get("owner_pid"):
            return False
        if row.get("owner_pid") == process.me().pid and row.get("owner_host") == process.me().host:
            return False  # this process: a run it drove and left (the TUI, a test)
        alive = process.alive(row.get("owner_host"), row.get("owner_pid"), row.get("owner_started"))
        return alive is not False

    def _claim_message(self, subject: str, holder: dict | None) -> str:
        if holder is None:
            return f"{subject} is being rotated by another run"
        status = holder["status"]
        run = holder["id"]
        if status == AWAITING_REVOKE:
            due = parse_time(holder.get("revoke_after"))
            when = f" until {due:%Y-%m-%d %H:%M} UTC" if due else ""
            return (
                f"the previous rotation (run {run[:12]}) still waits for its grace period{when} "
                "before the old value is revoked; a new rotation now would leave three values"
            )
        if status == ROLLBACK_FAILED:
            return f"run {run[:12]} failed and could not be rolled back: {holder.get('error')}"
        if self._owner_alive(holder):
            return (
                f"{subject} is being rotated right now by run {run[:12]} (process "
                f"{holder.get('owner_pid')} on {holder.get('owner_host')})"
            )
        return f"run {run[:12]} of {subject} was interrupted and is not finished"

    def _claim_hint(self, holder: dict | None) -> str:
        if holder is None:
            return "keyshift runs lists what runs"
        run = holder["id"][:12]
        if holder["status"] == AWAITING_REVOKE:
            return f"finish it early with: keyshift runs finish {run} --now"
        if holder["status"] == ROLLBACK_FAILED:
            return f"keyshift rotate --resume, or keyshift runs abandon {run} --reason ..."
        if self._owner_alive(holder):
            return "wait for it to finish"
        return f"keyshift rotate --resume, or keyshift runs abandon {run} --reason ..."

    def _grace(self, spec: Spec, grace: timedelta | None) -> timedelta:
        if grace is not None:
            return grace
        hours = spec.grace_hours
        if hours is None:
            hours = self.loaded.inventory.policies.grace_period_hours
        return timedelta(hours=hours)

    @staticmethod
    def _check_grace(grace: timedelta | None) -> timedelta | None:
        if grace is None:
            return None
        if grace < timedelta(0) or grace > MAX_GRACE:
            raise UsageError(
                "the grace period must be between 0 and 365 days",
                hint="--grace takes hours, e.g. --grace 24",
            )
        return grace

    @staticmethod
    def _read(issuer: Any, target: Any, scope: ValueScope) -> Value | None:
        """What consumers read at ``target`` now; parts the issuer says are not secret (an
        access key's id) are let out of the run's scope, so messages can name them."""
        value = target.read()
        for part in getattr(issuer, "public_parts", ()):
            if value and part in value:
                scope.discard(value[part])
        return value

    @staticmethod
    def _plan_part(plugin: Any, cred: Credential) -> PartPlan:
        return plugin.plan(credential_info(cred))

    @staticmethod
    def _merge(values: list[Value | None]) -> Value | None:
        merged: Value = {}
        for value in values:
            for part, v in (value or {}).items():
                merged.setdefault(part, v)
        return merged or None

    def _merged_old_fps(self, run: Run) -> dict[str, str]:
        merged: dict[str, str] = {}
        for fps in run.old_fps.values():
            for part, fp in fps.items():
                merged.setdefault(part, fp)
        return {p: fp for p, fp in merged.items() if p in run.new_fps}

    @staticmethod
    def _downtime(spec: Spec, issuer: Any, targets: list[Any], parts: list[PartPlan]) -> str:
        said = [p.downtime for p in parts if p.downtime]
        if said:
            return "; ".join(said)
        if spec.issuer.get("type") == "generated" and len(targets) > 1 and not all(
            t.stages for t in targets
        ):
            return (
                "consumers reading different targets may see different values between the "
                "first delivery and the last"
            )
        return "none"
