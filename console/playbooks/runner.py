"""Running a playbook: its manual steps and one rotation (or finish) per selected credential,
through the rotation engine, recorded in the store and the audit log.

- Order and concurrency: steps start in the playbook's order on a pool of ``concurrency``
  threads. The engine's claim keeps two processes (two schedulers, a scheduler and a console)
  off one credential; within one run, rows that share a rotation (a declared rotation's rows)
  are rotated once, by the first.
- Stop: once ``stop`` is set no new step starts; steps in flight finish (a rotation is never
  cut half-way); the rest are ``skipped`` and the run is ``stopped``.
- Failure policy ``stop``: after a failed step no new step starts (the rest ``skipped``);
  ``continue`` carries on and reports.
- A person: a credential a person mints (provider keys, and what nobody declared: unknown means
  manual) and every manual step need ``interaction``. Without one they are ``manual`` ("needs a
  person"), reported, never guessed and never silently skipped. With one, those steps run one
  at a time, so two prompts never interleave.
- Another process rotating the same credential is ``claimed-elsewhere``, not a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from console import process
from console.errors import KeyshiftError, ReadOnlyError, RotatedMeanwhile, RotationError
from console.playbooks.model import Playbook, PlaybookEvent, PlaybookResult, Selected, StepResult
from console.playbooks.selection import resolve_params, select
from console.redaction import redact_active
from console.rotation.specs import UNDECLARED

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store
    from rotators.base import Interaction

log = logging.getLogger(__name__)
MAX_AUDIT_IDS = 50


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def needs_person(spec: Any) -> bool:
    """Whether the credential's issuer is one a person works (the provider checklist)."""
    from rotators import registry

    if spec.problem or spec.legacy:
        return False
    try:
        issuer = registry.of_role(str(spec.issuer.get("type")), "issuer")
    except LookupError:
        return False
    return bool(getattr(issuer, "manual", False))


class _Runner:
    def __init__(
        self,
        pb: Playbook,
        values: dict[str, str],
        *,
        store: Store,
        audit: AuditLog,
        loaded: LoadedInventory,
        actor: str,
        engine: Any,
        dry_run: bool,
        interaction: Interaction | None,
        on_event: Callable[[PlaybookEvent], None] | None,
        stop: threading.Event,
    ) -> None:
        self.pb, self.values = pb, values
        self.store, self.audit, self.loaded = store, audit, loaded
        self.actor, self.engine, self.dry_run = actor, engine, dry_run
        self.interaction = interaction
        self.on_event = on_event
        self.stop = stop
        self.selected_at: datetime | None = None  # when the steps were chosen
        self.run_id = uuid.uuid4().hex
        self.record = not store.read_only
        self.total = 0
        self.halted = threading.Event()  # a failure under on_failure: stop
        self.subjects: dict[str, int] = {}
        self.subjects_lock = threading.Lock()
        self.person_lock = threading.Lock()
        self.event_lock = threading.Lock()

    # --- events -------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is None:
            return
        event = PlaybookEvent(kind, self.run_id, self.pb.name, self.total, **fields)
        try:
            with self.event_lock:  # watchers see one event at a time, whatever the thread
                self.on_event(event)
        except Exception as exc:
            # a watcher that went away (the console closed) must not stop the playbook
            log.warning("playbook event callback failed: %s", type(exc).__name__)
            self.on_event = None

    def progress_for(self, step: Selected) -> Callable[[str, str, str], None]:
        def progress(name: str, status: str, message: str) -> None:
            self.emit("progress", position=step.position, credential_id=step.credential_id,
                      action=step.action, status=status,
                      message=one_line(f"{name} {status} {message}".strip()))

        return progress

    # --- the run --------------------------------------------------------------------------------

    def run(self, selected: list[Selected]) -> PlaybookResult:
        before = [m for m in self.pb.manual_steps if m.when == "before"]
        after = [m for m in self.pb.manual_steps if m.when == "after"]
        plan: list[tuple[Selected, str | None]] = []
        for m in before:
            plan.append((Selected(0, "manual", None, None), m.text))
        plan += [(s, None) for s in selected]
        for m in after:
            plan.append((Selected(0, "manual", None, None), m.text))
        for i, (step, _) in enumerate(plan, 1):
            step.position = i
        self.total = len(plan)
        self._start(plan)
        results: dict[int, StepResult] = {}
        first_after = len(before) + len(selected)
        manual_before, manual_after = plan[: len(before)], plan[first_after:]
        work = [s for s, _ in plan[len(before):first_after]]
        for step, text in manual_before:
            results[step.position] = self._guarded(step, lambda s=step, t=text: self._manual(s, t))
        with ThreadPoolExecutor(max_workers=self.pb.concurrency,
                                thread_name_prefix=f"playbook-{self.pb.name}") as pool:
            futures = {
                s.position: pool.submit(self._guarded, s, lambda s=s: self._work(s))
                for s in work
            }
            for position, future in futures.items():
                results[position] = future.result()
        for step, text in manual_after:
            results[step.position] = self._guarded(step, lambda s=step, t=text: self._manual(s, t))
        steps = [results[s.position] for s, _ in plan]
        result = PlaybookResult(self.run_id, self.pb.name, self._status(steps), steps,
                                dict(self.values))
        self._finish(result)
        return result

    def _status(self, steps: list[StepResult]) -> str:
        if self.stop.is_set() and any(
            s.status == "skipped" and s.detail == "stopped" for s in steps
        ):
            return "stopped"
        if self.dry_run:
            return "dry-run"
        failed = sum(s.status == "failed" for s in steps)
        done = sum(s.status == "done" for s in steps)
        if failed:
            return "partial" if done else "failed"
        if any(s.status in ("manual", "skipped") for s in steps):
            return "partial"
        return "completed"

    def _start(self, plan: list[tuple[Selected, str | None]]) -> None:
        ids = [s.credential_id for s, _ in plan if s.credential_id]
        if self.record:
            def write() -> None:
                self.store.create_playbook_run(
                    self.run_id,
                    playbook=self.pb.name,
                    actor=self.actor,
                    params=self.values,
                    dry_run=self.dry_run,
                    steps=[
                        {"position": s.position, "credential_id": s.credential_id,
                         "action": s.action,
                         "detail": {k: v for k, v in (("text", t), ("reason", s.reason),
                                                      ("rotation_run_id", s.rotation_run_id))
                                    if v}}
                        for s, t in plan
                    ],
                    detail={"source": self.pb.source, "selection": self.pb.selection.describe()},
                )
                self.audit.append(self.actor, "playbook.start", self.pb.name, {
                    "run_id": self.run_id, "params": self.values, "dry_run": self.dry_run,
                    "steps": len(plan), "credentials": ids[:MAX_AUDIT_IDS],
                    "more": max(0, len(ids) - MAX_AUDIT_IDS),
                })

            self.store.atomically(write)
        self.emit("start", message=self.pb.selection.describe())

    def _finish(self, result: PlaybookResult) -> None:
        if self.record:
            detail = {"counts": result.counts, "status": result.status}

            def write() -> None:
                self.store.finish_playbook_run(self.run_id, result.status, detail)
                self.audit.append(self.actor, "playbook.finish", self.pb.name, {
                    "run_id": self.run_id, "status": result.status, "counts": result.counts,
                    "failed": [s.credential_id for s in result.failed][:MAX_AUDIT_IDS],
                })

            self.store.atomically(write)
        self.emit("finish", status=result.status, counts=result.counts,
                  message=", ".join(f"{n} {k}" for k, n in sorted(result.counts.items())))

    # --- one step ---------------------------------------------------------------------------------

    def _guarded(self, step: Selected, body: Callable[[], StepResult]) -> StepResult:
        """A step: skipped when stopped or halted; recorded before and after; a failure under
        ``on_failure: stop`` halts the rest."""
        if self.stop.is_set():
            result = self._result(step, "skipped", detail="stopped")
        elif self.halted.is_set():
            result = self._result(step, "skipped",
                                  detail="not started: an earlier step failed (on_failure: stop)")
        else:
            self._record(step.position, status="running", started_at=_now())
            self.emit("step-start", position=step.position, credential_id=step.credential_id,
                      action=step.action, rotation_run_id=step.rotation_run_id)
            try:
                result = body()
            except KeyshiftError as exc:
                result = self._result(step, "failed", error=exc.one_line())
            except Exception as exc:  # a bug must not take the other steps down with it
                log.exception("playbook step %s failed", step.position)
                result = self._result(
                    step, "failed",
                    error=f"internal error: {type(exc).__name__}: {redact_active(str(exc))}",
                )
            if result.status == "failed" and self.pb.on_failure == "stop":
                self.halted.set()
        result.error = one_line(result.error) if result.error else None
        result.detail = one_line(result.detail) if result.detail else None
        self._record(step.position, status=result.status, finished_at=_now(),
                     error=result.error, rotation_run_id=result.rotation_run_id)
        self.emit("step", position=step.position, credential_id=step.credential_id,
                  action=result.action, status=result.status,
                  rotation_run_id=result.rotation_run_id, error=result.error,
                  message=result.detail)
        return result

    def _record(self, position: int, **fields: Any) -> None:
        if self.record:
            self.store.update_playbook_step(self.run_id, position, **fields)

    @staticmethod
    def _result(step: Selected, status: str, **kw: Any) -> StepResult:
        kw.setdefault("rotation_run_id", step.rotation_run_id)
        return StepResult(step.position, step.credential_id, step.action, status, **kw)

    def _manual(self, step: Selected, text: str | None) -> StepResult:
        if self.interaction is None:
            return self._result(step, "manual", detail=f"needs a person: {text}")
        if self.dry_run:
            return self._result(step, "skipped", detail=f"dry run: a person would confirm: {text}")
        with self.person_lock:
            confirmed = self.interaction.confirm(f"{text}\nDone?")
        if confirmed:
            return self._result(step, "done", detail=f"confirmed: {text}")
        return self._result(step, "failed", error=f"not confirmed: {text}")

    def _work(self, step: Selected) -> StepResult:
        return self._finish_run(step) if step.action == "finish" else self._rotate(step)

    def _rotate(self, step: Selected) -> StepResult:
        cid = step.credential_id
        assert cid is not None
        spec = self.engine.spec_for(cid)
        with self.subjects_lock:
            first = self.subjects.get(spec.subject)
            if first is None:
                self.subjects[spec.subject] = step.position
        if first is not None:
            return self._result(step, "skipped",
                                detail=f"one rotation with step {first} ({spec.subject})")
        if spec.problem and spec.origin == UNDECLARED:
            # nobody declared who issues it or where its consumers read it: a person rotates
            # it (or declares it), never a failure of this run and never a guess
            return self._result(step, "manual", detail=f"needs a person: {spec.problem}")
        person = needs_person(spec)
        if person and self.interaction is None:
            return self._result(
                step, "manual",
                detail=f"needs a person: {spec.issuer_label} is minted by a person; "
                f"rotate it in a terminal: keyshift rotate {cid}",
            )
        if self.dry_run:
            plan = self.engine.plan(cid, grace=self.pb.grace)
            if plan.refused:
                return self._refused(step, spec.subject, plan.refused)
            who = " (a person mints it)" if person else ""
            return self._result(step, "skipped",
                                detail=f"dry run: would rotate, issuer {plan.issuer}{who}")
        lock = self.person_lock if person else contextlib.nullcontext()
        with lock:
            try:
                result = self.engine.rotate(
                    cid,
                    actor=self.actor,
                    grace=self.pb.grace,
                    progress=self.progress_for(step),
                    interaction=self.interaction,
                    playbook_run_id=self.run_id if self.record else None,
                    not_rotated_since=self.selected_at,
                )
            except RotatedMeanwhile as exc:
                # another scheduler or a console rotated it after this run chose it: rotating
                # it again would rotate one credential twice
                return self._result(step, "skipped", rotation_run_id=exc.run_id,
                                    detail=exc.one_line())
            except RotationError as exc:
                run = getattr(exc, "result", None)
                if run is not None:  # RotationFailed: it ran and was rolled back (or not)
                    return self._result(step, "failed", error=exc.one_line(),
                                        rotation_run_id=run.run_id, detail=run.status)
                return self._refused(step, spec.subject, exc.one_line())
        if result.error:
            return self._result(step, "failed", error=result.error,
                                rotation_run_id=result.run_id, detail=result.status)
        detail = result.status + (f" ({result.waiting})" if result.waiting else "")
        return self._result(step, "done", rotation_run_id=result.run_id, detail=detail)

    def _refused(self, step: Selected, subject: str, why: str) -> StepResult:
        """A rotation refused before it ran: another process holds the credential
        (claimed-elsewhere), the previous rotation still waits out its grace (skipped), or it
        cannot work (failed)."""
        holder = self.store.active_run(subject)
        if holder is not None and holder["status"] == "running" and _alive(holder):
            return self._result(step, "claimed-elsewhere", rotation_run_id=holder["id"],
                                detail=why)
        if holder is not None and holder["status"] == "awaiting-revoke":
            return self._result(step, "skipped", rotation_run_id=holder["id"], detail=why)
        return self._result(step, "failed", error=why)

    def _finish_run(self, step: Selected) -> StepResult:
        rid = step.rotation_run_id
        assert rid is not None
        row = self.store.get_rotation_run(rid)
        if row is None or row["status"] != "awaiting-revoke":
            state = row["status"] if row else "gone"
            return self._result(step, "skipped", detail=f"run {rid[:12]} is {state} already")
        if row.get("owner_pid") and _alive(row):
            return self._result(step, "claimed-elsewhere", detail="another process finishes it")
        if self.dry_run:
            return self._result(step, "skipped",
                                detail=f"dry run: would revoke the old value of run {rid[:12]}")
        with self.person_lock if self.interaction is not None else contextlib.nullcontext():
            result = self.engine.finish_run(rid, actor=self.actor,
                                            progress=self.progress_for(step),
                                            interaction=self.interaction)
        if result.error:
            row = self.store.get_rotation_run(rid) or {}
            if row.get("owner_pid") and _alive(row) and not _mine(row):
                return self._result(step, "claimed-elsewhere", detail=result.error)
            return self._result(step, "failed", error=result.error, detail=result.status)
        if result.waiting and result.status == "awaiting-revoke" and "person" in result.waiting:
            return self._result(step, "manual", detail=f"needs a person: {result.waiting}")
        detail = result.status + (f" ({result.waiting})" if result.waiting else "")
        return self._result(step, "done", detail=detail)


def _now() -> datetime:
    return datetime.now(UTC)


def _mine(row: dict) -> bool:
    me = process.me()
    return row.get("owner_pid") == me.pid and row.get("owner_host") == me.host


def _alive(row: dict) -> bool:
    """Whether the run's owner still runs (this process counts: another thread of it, the
    console's own rotation, holds it)."""
    if not row.get("owner_pid"):
        return False
    if _mine(row):
        return True
    return process.alive(row.get("owner_host"), row.get("owner_pid"),
                         row.get("owner_started")) is not False


def run_playbook(
    pb: Playbook,
    params: dict[str, Any] | None,
    *,
    store: Store,
    audit: AuditLog,
    loaded: LoadedInventory,
    actor: str,
    engine: Any = None,
    dry_run: bool = False,
    interaction: Interaction | None = None,
    now: datetime | None = None,
    on_event: Callable[[PlaybookEvent], None] | None = None,
    stop: threading.Event | None = None,
    selected: list[Selected] | None = None,
    selected_at: datetime | None = None,
) -> PlaybookResult:
    """Select, then run every step (see the module's docstring). A dry run plans each rotation
    against the servers and changes nothing at them.

    ``selected``/``selected_at``: the steps a person confirmed and when they were selected, so
    what runs is what was confirmed (not a fresh selection), and a credential another run
    rotated since then is skipped, not rotated twice."""
    values = resolve_params(pb, params)
    if engine is None:
        from console.rotation import RotationEngine

        engine = RotationEngine(store, audit, loaded, read_only=dry_run or store.read_only)
    if not dry_run and (store.read_only or getattr(engine, "read_only", False)):
        raise ReadOnlyError(f"playbook {pb.name}")
    moment = now or datetime.now(UTC)
    if selected is None:
        selected_at = datetime.now(UTC)  # the real time: runs record it, not ``now``
        selected = select(pb, values, store=store, loaded=loaded, now=moment)
    runner = _Runner(pb, values, store=store, audit=audit, loaded=loaded, actor=actor,
                     engine=engine, dry_run=dry_run, interaction=interaction, on_event=on_event,
                     stop=stop or threading.Event())
    runner.selected_at = selected_at
    return runner.run([dataclasses.replace(s) for s in selected])
