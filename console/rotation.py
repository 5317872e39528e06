"""The rotation engine: runs a rotator's steps as a journal in the store.

Each run goes create -> verify -> promote, then waits out the grace period and revokes the old
credential (DESIGN.md, "Rotators"). Every step is journaled before it runs (``started``) and
after (``done`` / ``failed`` with the redacted error) and appended to the audit log, so after a
crash ``resume`` re-runs the first unfinished step (steps are idempotent) or, when a step before
promote failed, rolls back. A run's pending version lives in the journal as a reference (a KV
version, an access key id), never as a value.

Run statuses: planned -> running -> awaiting-revoke -> completed; or rolled-back, or
rollback-failed (resumable: the rollback is re-run).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlparse

from console.errors import (
    KeyshiftError,
    NotFoundError,
    ReadOnlyError,
    RotationError,
    UsageError,
)
from console.fingerprint import fingerprint
from console.model import Credential
from console.redaction import redact_active
from rotators import registry
from rotators.base import (
    CredentialInfo,
    GeneratorRule,
    Pending,
    Plan,
    Rotator,
    RotatorContext,
    RotatorError,
)
from rotators.values import generate

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store

log = logging.getLogger(__name__)

PLANNED = "planned"
RUNNING = "running"
AWAITING_REVOKE = "awaiting-revoke"
COMPLETED = "completed"
ROLLED_BACK = "rolled-back"
ROLLBACK_FAILED = "rollback-failed"
TERMINAL = (COMPLETED, ROLLED_BACK)

# Test hook, not a mock: the engine SIGKILLs itself at a journal point so the crash tests can
# resume a run killed for real. Values: "<step>" (after its done row), "<step>:started" (after
# the started row, before the step runs), "<step>:ran" (after it ran, before the done row).
CRASH_ENV = "KEYSHIFT_TEST_CRASH_AFTER"

# (step, status, message): step is create/verify/promote/revoke/rollback; status is
# started/done/failed/scheduled.
Progress = Callable[[str, str, str], None]
T = TypeVar("T")


@dataclass
class RunResult:
    run_id: str
    credential_id: str
    rotator: str
    status: str
    version: str | None = None
    previous_version: str | None = None
    revoke_after: datetime | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The new credential is promoted (whether or not the old one is revoked yet)."""
        return self.status in (AWAITING_REVOKE, COMPLETED)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["revoke_after"] = self.revoke_after.isoformat() if self.revoke_after else None
        return data


class RotationFailed(RotationError):
    """A run did not promote; ``result`` says whether it was rolled back."""

    def __init__(self, message: str, *, hint: str | None, result: RunResult) -> None:
        super().__init__(message, hint=hint)
        self.result = result


class _StepFailed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _crash_point(point: str) -> None:
    wanted = os.environ.get(CRASH_ENV)
    if wanted and wanted == point:
        os.kill(os.getpid(), signal.SIGKILL)


class EngineContext:
    """The ``RotatorContext`` rotators get: clients for the inventory's sources, and keyshift's
    secret-value helpers (generate, fingerprint) that remember values for redaction."""

    def __init__(self, loaded: LoadedInventory, clock: Callable[[], datetime]) -> None:
        self.loaded = loaded
        self._clock = clock
        self._vault: dict[str, Any] = {}

    def vault_client(self, source: str) -> Any:
        if source not in self._vault:
            import hvac
            import requests

            from console.sandbox import resolve_vault

            cfg = self.loaded.source(source)
            if cfg.type not in ("vault", "openbao"):
                raise RotationError(f"source {source!r} is {cfg.type}, not vault/openbao")
            address, token = resolve_vault(cfg)
            session = requests.Session()
            if urlparse(address).hostname in ("127.0.0.1", "localhost", "::1"):
                session.trust_env = False  # loopback (the sandbox): never through a proxy
            self._vault[source] = hvac.Client(
                url=address,
                token=token,
                namespace=getattr(cfg, "namespace", None),
                timeout=30,
                session=session,
            )
        return self._vault[source]

    def aws_client(self, source: str, service: str, region: str | None = None) -> Any:
        import boto3

        from console.sandbox import resolve_aws

        cfg = self.loaded.source(source)
        if cfg.type != "aws":
            raise RotationError(f"source {source!r} is {cfg.type}, not aws")
        kwargs = resolve_aws(cfg)
        if region:
            kwargs["region_name"] = region
        return boto3.client(service, **kwargs)

    def generate(self, rule: GeneratorRule) -> str:
        return generate(rule.length, rule.alphabet, rule.prefix).reveal()

    def fingerprint(self, value: str) -> str:
        return fingerprint(value)

    def now(self) -> datetime:
        return self._clock()

    def preflight(self, source: str) -> None:
        """Resolve the source's client before a run starts, so "sandbox not running" or a
        missing token is a plain error rather than a failed (and rolled-back) run."""
        cfg = self.loaded.source(source)
        if cfg.type in ("vault", "openbao"):
            client = self.vault_client(source)
            try:
                # one authenticated round trip: a server that is down or a token it refuses
                # is reported before any run (and its journal) exists
                client.auth.token.lookup_self()
            except Exception as exc:
                raise RotationError(
                    f"{source}: cannot reach Vault at {client.url} or the token is refused "
                    f"({type(exc).__name__})",
                    hint="check `keyshift sandbox status` or the source's address and token",
                ) from None
        elif cfg.type == "aws":
            from console.sandbox import resolve_aws

            resolve_aws(cfg)


@dataclass
class _Run:
    """One run being driven: what every step needs."""

    run_id: str
    cred: Credential
    info: CredentialInfo
    rotator: Rotator
    rotator_name: str
    actor: str
    grace: timedelta
    progress: Progress | None

    def emit(self, step: str, status: str, message: str = "") -> None:
        if self.progress:
            try:
                self.progress(step, status, redact_active(message))
            except Exception as exc:
                # a watcher that went away (the TUI quit) must not stop a run half-way
                log.warning("rotation progress callback failed: %s", type(exc).__name__)
                self.progress = None


class RotationEngine:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        loaded: LoadedInventory,
        *,
        context_factory: Callable[[], RotatorContext] | None = None,
        clock: Callable[[], datetime] | None = None,
        read_only: bool = False,
    ) -> None:
        self.store = store
        self.audit = audit
        self.loaded = loaded
        self.clock = clock or _utcnow
        self.read_only = read_only
        self._context_factory = context_factory or (lambda: EngineContext(loaded, self.clock))
        self._context: RotatorContext | None = None

    # --- public -----------------------------------------------------------------------------

    @property
    def context(self) -> RotatorContext:
        if self._context is None:
            self._context = self._context_factory()
        return self._context

    def rotator_for(self, cred_id: str) -> str:
        return self._rotator_name(self._credential(cred_id))

    def plan(self, cred_id: str) -> Plan:
        """What rotating ``cred_id`` would do. Changes nothing."""
        cred = self._credential(cred_id)
        name = self._rotator_name(cred)
        rotator = self._rotator(name)
        try:
            return rotator.plan(credential_info(cred))
        except RotatorError as exc:
            raise RotationError(
                f"cannot plan {cred_id}: {redact_active(str(exc))}", hint=f"rotator {name}"
            ) from None
        except Exception as exc:  # a third-party rotator's bug: one redacted line, no value
            raise RotationError(
                f"cannot plan {cred_id}: {type(exc).__name__}: {redact_active(str(exc))}",
                hint=f"rotator {name}",
            ) from None

    def rotate(
        self,
        cred_id: str,
        *,
        actor: str,
        grace: timedelta | None = None,
        progress: Progress | None = None,
    ) -> RunResult:
        """Rotate ``cred_id``; returns once the new value is verified and promoted.

        The old value stays valid for ``grace`` (default: the inventory's
        policies.grace_period_hours) and is revoked by ``finish_due``; a zero grace revokes it
        before returning. Raises RotationFailed (after rolling back) when a step fails.
        """
        self._writable(f"rotate {cred_id}")
        if grace is not None and grace < timedelta(0):
            raise UsageError("the grace period cannot be negative")
        cred = self._credential(cred_id)
        name = self._rotator_name(cred)
        rotator = self._rotator(name)
        info = credential_info(cred)
        try:
            plan = rotator.plan(info)
        except RotatorError as exc:
            raise RotationError(
                f"cannot plan {cred_id}: {redact_active(str(exc))}", hint=f"rotator {name}"
            ) from None
        if plan.manual or getattr(rotator, "manual", False):
            raise RotationError(
                f"{cred_id} is rotated by hand (rotator {name})",
                hint="work through its checklist in a playbook or incident",
            )
        for run in self.store.unfinished_rotation_runs():
            if run["credential_id"] == cred_id and run["status"] != AWAITING_REVOKE:
                raise RotationError(
                    f"{cred_id} already has an unfinished rotation (run {run['id']}, "
                    f"{run['status']})",
                    hint=f"finish it first: keyshift rotate --resume (run {run['id']})",
                )
        preflight = getattr(self.context, "preflight", None)
        if preflight:
            preflight(cred.source)
        if grace is None:
            grace = timedelta(hours=self.loaded.inventory.policies.grace_period_hours)
        plan_dict = {**asdict(plan), "grace_seconds": grace.total_seconds()}
        run_id = self.store.create_rotation_run(cred_id, name, plan_dict, actor)
        self.store.set_run_status(
            run_id, RUNNING, detail={"pid": os.getpid(), "host": socket.gethostname()}
        )
        self.audit.append(
            actor,
            "rotation.start",
            cred_id,
            {"run_id": run_id, "rotator": name, "grace_seconds": grace.total_seconds()},
        )
        run = _Run(run_id, cred, info, rotator, name, actor, grace, progress)
        return self._drive(run)

    def resume(self, run_id: str, *, actor: str, progress: Progress | None = None) -> RunResult:
        """Carry an interrupted run on from its first unfinished step, or roll it back if a
        step before promote had failed. A finished run is returned as it is."""
        self._writable(f"resume rotation {run_id}")
        row = self.store.get_rotation_run(run_id)
        if row is None:
            raise NotFoundError(
                f"no rotation run {run_id!r}", hint="keyshift show <credential> lists its runs"
            )
        if row["status"] in TERMINAL:
            return self._result(row)
        owner = self._live_owner(row)
        if owner:
            raise RotationError(
                f"rotation run {run_id} is still running in process {owner}",
                hint="wait for it to finish",
            )
        run = self._load_run(row, actor, progress)
        self.audit.append(
            actor,
            "rotation.resume",
            row["credential_id"],
            {"run_id": run_id, "from": row["status"]},
        )
        self.store.set_run_status(
            run_id,
            row["status"] if row["status"] != PLANNED else RUNNING,
            detail={**(row.get("detail") or {}), "pid": os.getpid(), "host": socket.gethostname()},
        )
        return self._drive(run)

    def resume_unfinished(self, actor: str, progress: Progress | None = None) -> list[RunResult]:
        """Resume every run a crash left behind. Runs merely waiting out their grace period are
        left to ``finish_due``; runs still owned by a live process are left alone."""
        self._writable("resume unfinished rotations")
        results: list[RunResult] = []
        for row in self.store.unfinished_rotation_runs():
            if self._live_owner(row):
                continue
            if row["status"] == AWAITING_REVOKE and not self._revoke_interrupted(row["id"]):
                continue
            try:
                results.append(self.resume(row["id"], actor=actor, progress=progress))
            except RotationFailed as exc:
                results.append(exc.result)
        return results

    def finish_due(
        self, *, actor: str, now: datetime | None = None, progress: Progress | None = None
    ) -> list[RunResult]:
        """Revoke the old credential of every run whose grace period has passed."""
        self._writable("revoke rotated credentials")
        now = now or self.clock()
        results = []
        for row in self.store.rotation_runs(status=AWAITING_REVOKE, limit=1_000_000):
            revoke_after = _parse((row.get("detail") or {}).get("revoke_after"))
            if revoke_after is not None and revoke_after > now:
                continue
            run = self._load_run(row, actor, progress)
            results.append(self._revoke(run, row.get("previous_version")))
        return results

    def runs(self, credential_id: str | None = None, limit: int = 50) -> list[RunResult]:
        return [self._result(r) for r in self.store.rotation_runs(credential_id, limit=limit)]

    # --- driving a run ----------------------------------------------------------------------

    def _drive(self, run: _Run) -> RunResult:
        steps = _latest_steps(self.store.rotation_steps(run.run_id))
        row = self.store.get_rotation_run(run.run_id) or {}
        if row.get("status") == AWAITING_REVOKE:
            if self._revoke_interrupted(run.run_id):
                return self._revoke(run, row.get("previous_version"))
            return self._result(row)
        pending = _pending_from(steps.get("create"))
        failed = [s for s in ("create", "verify", "promote") if _status(steps, s) == "failed"]
        if "rollback" in steps or failed:
            reason = row.get("error") or (f"{failed[0]} failed" if failed else "interrupted")
            return self._rollback(run, pending, failed[0] if failed else "rollback", reason)
        try:
            if pending is None:
                pending = self._step(
                    run,
                    "create",
                    lambda: run.rotator.create(run.info, run.run_id),
                    detail=_pending_detail,
                    message=lambda p: f"version {p.version} written (pending)",
                )
                self.store.set_run_status(
                    run.run_id,
                    RUNNING,
                    pending_version=pending.version,
                    previous_version=pending.previous_version,
                )
            created = pending
            if _status(steps, "verify") != "done":
                self._step(run, "verify", lambda: run.rotator.verify(run.info, created))
            if _status(steps, "promote") != "done":
                self._step(run, "promote", lambda: run.rotator.promote(run.info, created))
        except _StepFailed as exc:
            return self._rollback(run, pending, exc.step, exc.message)
        return self._after_promote(run, pending)

    def _step(
        self,
        run: _Run,
        step: str,
        fn: Callable[[], T],
        *,
        detail: Callable[[T], dict] | None = None,
        message: Callable[[T], str] | None = None,
    ) -> T:
        run.emit(step, "started")
        step_id = self.store.start_step(run.run_id, step)
        _crash_point(f"{step}:started")
        try:
            out = fn()
        except KeyshiftError as exc:
            self._step_failed(run, step, step_id, exc.one_line())
        except RotatorError as exc:
            self._step_failed(run, step, step_id, str(exc))
        except Exception as exc:  # a fault in a (maybe third-party) rotator: journal it, roll back
            self._step_failed(run, step, step_id, f"{type(exc).__name__}: {exc}")
        _crash_point(f"{step}:ran")
        step_detail = detail(out) if detail else {}
        self.store.finish_step(step_id, "done", detail=step_detail)
        self.audit.append(
            run.actor,
            "rotation.step",
            run.cred.id,
            {"run_id": run.run_id, "step": step, "status": "done", **step_detail},
        )
        _crash_point(step)
        run.emit(step, "done", message(out) if message else "")
        return out

    def _step_failed(self, run: _Run, step: str, step_id: int, error: str) -> NoReturn:
        error = redact_active(error)
        self.store.finish_step(step_id, "failed", error=error)
        self.audit.append(
            run.actor,
            "rotation.step",
            run.cred.id,
            {"run_id": run.run_id, "step": step, "status": "failed", "error": error},
        )
        run.emit(step, "failed", error)
        raise _StepFailed(step, error)

    def _after_promote(self, run: _Run, pending: Pending) -> RunResult:
        now = self.clock()
        self.store.record_rotation(
            run.cred.id, now, pending.version, pending.detail.get("fingerprint")
        )
        row = self.store.get_rotation_run(run.run_id) or {}
        revoke_after = now + run.grace
        self.store.set_run_status(
            run.run_id,
            AWAITING_REVOKE,
            error=None,
            pending_version=pending.version,
            previous_version=pending.previous_version,
            detail={**(row.get("detail") or {}), "revoke_after": revoke_after.isoformat()},
        )
        if run.grace <= timedelta(0) or not pending.previous_version:
            return self._revoke(run, pending.previous_version)
        self.audit.append(
            run.actor,
            "rotation.outcome",
            run.cred.id,
            {
                "run_id": run.run_id,
                "status": AWAITING_REVOKE,
                "version": pending.version,
                "previous_version": pending.previous_version,
                "revoke_after": revoke_after.isoformat(),
            },
        )
        run.emit("revoke", "scheduled", f"after {revoke_after.isoformat(timespec='seconds')}")
        return self._result(self.store.get_rotation_run(run.run_id) or {})

    def _revoke(self, run: _Run, previous: str | None) -> RunResult:
        if previous:
            try:
                self._step(
                    run,
                    "revoke",
                    lambda: run.rotator.revoke(run.info, previous),
                    detail=lambda _: {"revoked_version": previous},
                    message=lambda _: f"version {previous} revoked",
                )
            except _StepFailed as exc:
                # The new credential is live; the old one simply stays valid until a retry.
                self.store.set_run_status(run.run_id, AWAITING_REVOKE, error=exc.message)
                return self._result(self.store.get_rotation_run(run.run_id) or {})
        self.store.set_run_status(run.run_id, COMPLETED, error=None)
        row = self.store.get_rotation_run(run.run_id) or {}
        self.audit.append(
            run.actor,
            "rotation.outcome",
            run.cred.id,
            {
                "run_id": run.run_id,
                "status": COMPLETED,
                "version": row.get("pending_version"),
                "revoked_version": previous,
            },
        )
        return self._result(row)

    def _rollback(self, run: _Run, pending: Pending | None, step: str, reason: str) -> RunResult:
        # A create that failed part-way has no journaled pending: the rotator finds whatever
        # this run left by its run id (rotators.base.Rotator.rollback).
        target = pending or Pending(version="", detail={"run_id": run.run_id})
        try:
            self._step(run, "rollback", lambda: run.rotator.rollback(run.info, target))
        except _StepFailed as exc:
            error = f"{step} failed: {reason}; rollback failed: {exc.message}"
            self.store.set_run_status(run.run_id, ROLLBACK_FAILED, error=error)
            self.audit.append(
                run.actor,
                "rotation.outcome",
                run.cred.id,
                {"run_id": run.run_id, "status": ROLLBACK_FAILED, "error": error},
            )
            result = self._result(self.store.get_rotation_run(run.run_id) or {})
            raise RotationFailed(
                f"rotation of {run.cred.id} failed at {step} and could not be rolled back: "
                f"{exc.message}",
                hint=f"fix the cause, then: keyshift rotate --resume (run {run.run_id})",
                result=result,
            ) from None
        error = f"{step} failed: {reason}"
        self.store.set_run_status(run.run_id, ROLLED_BACK, error=error)
        self.audit.append(
            run.actor,
            "rotation.outcome",
            run.cred.id,
            {"run_id": run.run_id, "status": ROLLED_BACK, "error": error},
        )
        result = self._result(self.store.get_rotation_run(run.run_id) or {})
        raise RotationFailed(
            f"rotation of {run.cred.id} failed at {step} ({reason}); rolled back, the old "
            "value is still current",
            hint=f"run {run.run_id}; its steps are in the journal (keyshift show {run.cred.id})",
            result=result,
        )

    # --- helpers ----------------------------------------------------------------------------

    def _writable(self, action: str) -> None:
        if self.read_only:
            raise ReadOnlyError(action)

    def _credential(self, cred_id: str) -> Credential:
        cred = self.store.get_credential(cred_id)
        if cred is None:
            raise NotFoundError(f"no credential {cred_id!r}", hint="run keyshift sync, then ls")
        return cred

    def _rotator_name(self, cred: Credential) -> str:
        if cred.rotator:
            try:
                registry.get(cred.rotator)
            except LookupError as exc:
                raise RotationError(
                    f"{cred.id} names rotator {cred.rotator!r}, which is not installed",
                    hint=str(exc),
                ) from None
            return cred.rotator
        candidates = registry.for_kind(cred.kind)
        if not candidates:
            raise RotationError(
                f"no rotator can rotate {cred.id} (kind {cred.kind})",
                hint=f"set a rotator on it; installed rotators: {', '.join(registry.names())}",
            )
        return candidates[0]

    def _rotator(self, name: str) -> Rotator:
        try:
            return registry.create(name, self.context)
        except LookupError as exc:
            raise RotationError(str(exc), hint="install the rotator's package") from None

    def _load_run(self, row: dict, actor: str, progress: Progress | None) -> _Run:
        cred = self._credential(row["credential_id"])
        grace_seconds = (row.get("plan") or {}).get("grace_seconds")
        if grace_seconds is None:
            grace_seconds = self.loaded.inventory.policies.grace_period_hours * 3600
        return _Run(
            row["id"],
            cred,
            credential_info(cred),
            self._rotator(row["rotator"]),
            row["rotator"],
            actor,
            timedelta(seconds=float(grace_seconds)),
            progress,
        )

    def _revoke_interrupted(self, run_id: str) -> bool:
        return _status(_latest_steps(self.store.rotation_steps(run_id)), "revoke") == "started"

    @staticmethod
    def _live_owner(row: dict) -> int | None:
        detail = row.get("detail") or {}
        pid, host = detail.get("pid"), detail.get("host")
        if not pid or host != socket.gethostname() or pid == os.getpid():
            return None
        return int(pid) if _pid_alive(int(pid)) else None

    @staticmethod
    def _result(row: dict) -> RunResult:
        return RunResult(
            run_id=row.get("id", ""),
            credential_id=row.get("credential_id", ""),
            rotator=row.get("rotator", ""),
            status=row.get("status", ""),
            version=row.get("pending_version"),
            previous_version=row.get("previous_version"),
            revoke_after=_parse((row.get("detail") or {}).get("revoke_after")),
            error=row.get("error"),
        )


def credential_info(cred: Credential) -> CredentialInfo:
    """What a rotator sees: identity and metadata (the source's custom metadata lands in tags)."""
    metadata: dict[str, Any] = dict(cred.tags)
    for key in ("owner", "environment", "scope", "sensitivity", "rotator", "location"):
        value = getattr(cred, key)
        if value is not None and key not in metadata:
            metadata[key] = value
    return CredentialInfo(
        id=cred.id,
        source=cred.source,
        kind=cred.kind,
        native_id=cred.native_id,
        name=cred.name,
        location=cred.location,
        version=cred.version,
        environment=cred.environment,
        metadata=metadata,
    )


def _latest_steps(rows: list[dict]) -> dict[str, dict]:
    """The last journal row of each step (rows come in id order)."""
    latest: dict[str, dict] = {}
    for row in rows:
        latest[row["step"]] = row
    return latest


def _status(steps: dict[str, dict], step: str) -> str | None:
    row = steps.get(step)
    return row["status"] if row else None


def _pending_detail(pending: Pending) -> dict:
    return {
        "version": pending.version,
        "previous_version": pending.previous_version,
        "pending": pending.detail,
    }


def _pending_from(row: dict | None) -> Pending | None:
    if not row or row["status"] != "done" or not row.get("detail"):
        return None
    detail = row["detail"]
    return Pending(
        version=str(detail["version"]),
        previous_version=detail.get("previous_version"),
        detail=dict(detail.get("pending") or {}),
    )
