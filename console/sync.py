"""Sync: run the inventory's sources and write what they found through the store.

A source that raises leaves its rows as they were, marked stale with the error (invariant 6).
A partial listing (``complete=False``) never marks anything gone. Each source's rows commit
in one transaction with their ``sync.source`` audit entry, and the sync's end with its ``sync``
entry, so a crash between two sources leaves nothing unaudited; the next sync closes out a sync
whose process died (``sync.interrupted``).

The sources are read side by side (``SYNC_WORKERS`` at a time, in threads of their own) and
written one at a time, on the calling thread, in the inventory's order: the audit chain and the
summary do not depend on which collect finished first. Collectors never touch the store.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console import process
from console.crashpoints import crash_point
from console.errors import KeyshiftError
from console.redaction import redact_active
from console.sources.base import CollectResult, Source, build_sources

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.findings import ExposureHit
    from console.store import Store


@dataclass
class SourceOutcome:
    source: str
    status: str  # ok | partial | failed
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    stale: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SyncSummary:
    sync_id: int
    outcomes: list[SourceOutcome]
    # what the findings refresh after the sync recorded: open counts by severity, and the
    # one-line error when it failed (the sync itself stands)
    findings: dict[str, int] = field(default_factory=dict)
    findings_error: str | None = None

    def total(self, attr: str) -> int:
        return sum(getattr(o, attr) for o in self.outcomes)

    @property
    def error_count(self) -> int:
        return sum(len(o.errors) for o in self.outcomes)

    @property
    def status(self) -> str:
        states = {o.status for o in self.outcomes}
        if states <= {"ok"}:
            return "ok"
        return "failed" if states == {"failed"} else "partial"

    def as_dict(self) -> dict:
        return {
            "sync_id": self.sync_id,
            "status": self.status,
            "new": self.total("new"),
            "changed": self.total("changed"),
            "gone": self.total("gone"),
            "stale": self.total("stale"),
            "errors": self.error_count,
            "sources": [o.__dict__ for o in self.outcomes],
        }


# Progress events: (source, phase, message); phase is "start", "item", "done" or "failed".
# "start" and "item" come from the source's collect thread, "done" and "failed" from the
# calling thread once the source is written; the callback sees one call at a time.
SyncProgress = Callable[[str, str, str], None]

# Sources collected at once. A collect is network-bound (each Vault or AWS collect runs its own
# pool of requests), and every collect waiting to be written holds its whole listing in memory.
SYNC_WORKERS = 4


def run_sync(
    loaded: LoadedInventory,
    store: Store,
    audit: AuditLog,
    *,
    actor: str,
    only: list[str] | None = None,
    progress: SyncProgress | None = None,
    workers: int = SYNC_WORKERS,
) -> SyncSummary:
    watcher = [progress]
    # collects report from their own threads: the callback (the TUI's, the CLI's) was written
    # for one caller at a time, and a watcher that went away must be gone for every thread
    watcher_lock = threading.Lock()

    def emit(source: str, phase: str, message: str = "") -> None:
        if watcher[0] is None:
            return
        with watcher_lock:
            if watcher[0] is None:
                return
            try:
                watcher[0](source, phase, message)
            except Exception as exc:
                # a watcher that went away (the TUI quit) must not turn into a source failure
                log.warning("sync progress callback failed: %s", type(exc).__name__)
                watcher[0] = None

    collectors = build_sources(loaded, only)
    close_interrupted_syncs(store, audit, actor)
    store.upsert_sources(_source_rows(loaded))
    store.upsert_agents(_agent_rows(loaded))
    sync_id = store.begin_sync([c.name for c in collectors], actor, process.me())
    outcomes: list[SourceOutcome] = []
    collects: _Collects | None = None
    try:
        for collector in collectors:
            if hasattr(collector, "start_positions"):  # it reads an evidence log: resume there
                collector.start_positions = store.read_positions(collector.name)
        collects = _Collects(collectors, emit, workers)
        for index, collector in enumerate(collectors):
            outcomes.append(
                _sync_one(collector, collects.take(index), store, audit, actor, sync_id, emit)
            )
    except BaseException as exc:
        # The store itself failed (busy, disk full) or the run was interrupted: what earlier
        # sources wrote is committed, so the audit log must still say this sync happened.
        # Collects not started never start; running ones are not waited for (their threads
        # are daemons, and nothing they return is written).
        if collects is not None:
            collects.cancel()
        watcher[0] = None
        detail = SyncSummary(sync_id, outcomes).as_dict()
        detail["status"] = "failed"
        detail["error"] = redact_active(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            store.finish_sync(sync_id, "failed", detail)
        audit.append(actor, "sync", ",".join(c.name for c in collectors), detail)
        raise
    summary = SyncSummary(sync_id, outcomes)
    with store.transaction():  # the sync's end and its audit entry commit together
        store.finish_sync(sync_id, summary.status, summary.as_dict())
        audit.append(actor, "sync", ",".join(o.source for o in outcomes), summary.as_dict())
    _refresh_findings(loaded, store, audit, actor, summary)
    return summary


class _Collects:
    """The sources' collects, run ``workers`` at a time in daemon threads, each result taken by
    the calling thread in the inventory's order. A collect's exception is its result too: the
    calling thread decides what it means (a failed source, or an interrupted sync)."""

    def __init__(self, collectors: list[Source], emit: Callable[..., None], workers: int) -> None:
        self._emit = emit
        futures: list[Future[CollectResult]] = [Future() for _ in collectors]
        self._jobs: queue.SimpleQueue[tuple[Source, Future[CollectResult]]] = queue.SimpleQueue()
        for job in zip(collectors, futures, strict=True):
            self._jobs.put(job)
        self._futures: list[Future[CollectResult] | None] = list(futures)
        # daemons: an interrupted sync (Ctrl-C) must not wait at exit for a slow source
        for n in range(max(1, min(workers, len(collectors)))):
            threading.Thread(target=self._work, name=f"keyshift-sync-{n}", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                collector, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():  # else the sync ended before its turn
                self._collect(collector, future)

    def _collect(self, collector: Source, future: Future[CollectResult]) -> None:
        # in a call of its own so that no local outlives it: the listing is the calling
        # thread's to hold, and to let go once written
        try:
            self._emit(collector.name, "start")
            future.set_result(
                collector.collect(lambda item, name=collector.name: self._emit(name, "item", item))
            )
        except BaseException as exc:
            future.set_exception(exc)

    def take(self, index: int) -> Future[CollectResult]:
        """The index-th source's collect, once finished; let go of here, so a written listing
        is not held until the sync ends."""
        future = self._futures[index]
        assert future is not None
        future.exception()  # waits (a Ctrl-C interrupts the wait; cancel() still sees it)
        self._futures[index] = None
        return future

    def cancel(self) -> None:
        for future in self._futures:
            if future is not None:
                future.cancel()


def _refresh_findings(
    loaded: LoadedInventory, store: Store, audit: AuditLog, actor: str, summary: SyncSummary
) -> None:
    """Findings follow every sync. A failure here is said, and the sync still stands."""
    from console import findings

    try:
        findings.refresh(store, loaded, audit, actor, hits=_scan_workspaces(loaded, store))
        summary.findings = store.open_findings_by_severity()
    except KeyshiftError as exc:
        summary.findings_error = exc.one_line()
    except Exception as exc:  # a rule's bug must not undo a sync that landed
        summary.findings_error = redact_active(f"findings: {type(exc).__name__}: {exc}")
        log.exception("findings refresh failed after sync %s", summary.sync_id)


def close_interrupted_syncs(store: Store, audit: AuditLog, actor: str) -> list[int]:
    """Syncs a crash left marked running (their process is gone) are closed out as
    interrupted, with an audit entry, so none stays running forever. Each source a crashed
    sync applied was committed with its own audit entry; only the sync's end is missing."""
    closed = []
    for row in store.running_syncs():
        if process.alive(row["owner_host"], row["owner_pid"], row["owner_started"]) is not False:
            continue  # still running, or on another host: not ours to close
        detail = {"sync_id": row["id"], "status": "interrupted", "started_at": row["started_at"]}
        with store.transaction():
            store.finish_sync(row["id"], "interrupted", detail)
            audit.append(actor, "sync.interrupted", f"sync {row['id']}", detail)
        closed.append(row["id"])
    return closed


def _sync_one(
    collector: Source,
    collect: Future[CollectResult],
    store: Store,
    audit: AuditLog,
    actor: str,
    sync_id: int,
    emit: Callable[..., Any],
) -> SourceOutcome:
    try:
        result = collect.result()
    except KeyshiftError as exc:
        stale = _mark_failed(store, audit, actor, sync_id, collector.name, exc.one_line())
        log.warning("sync %s %s failed: %s", sync_id, collector.name, exc.one_line())
        emit(collector.name, "failed", exc.one_line())
        return SourceOutcome(collector.name, "failed", stale=stale, errors=[exc.one_line()])
    except Exception as exc:  # an unexpected fault in a collector must not lose the sync
        message = redact_active(f"{type(exc).__name__}: {exc}")
        stale = _mark_failed(store, audit, actor, sync_id, collector.name, message)
        log.warning("sync %s %s failed: %s", sync_id, collector.name, message)
        emit(collector.name, "failed", message)
        return SourceOutcome(collector.name, "failed", stale=stale, errors=[message])
    with store.transaction():  # a source's rows and their audit entry commit together
        changes = store.apply_source(
            sync_id,
            collector.name,
            result.credentials,
            result.grants,
            result.usage,
            result.errors,
            result.complete,
            result.positions,
        )
        audit.append(
            actor,
            "sync.source",
            collector.name,
            {
                "sync_id": sync_id,
                "complete": result.complete,
                "new": changes.new,
                "changed": changes.changed,
                "gone": changes.gone,
                "stale": changes.stale,
                "errors": len(result.errors),
            },
        )
    crash_point(f"sync:{collector.name}")
    log.info(
        "sync %s %s: %s new, %s changed, %s gone, %s stale, %s item errors",
        sync_id,
        collector.name,
        changes.new,
        changes.changed,
        changes.gone,
        changes.stale,
        len(result.errors),
    )
    emit(collector.name, "done", f"{len(result.credentials)} credentials")
    return SourceOutcome(
        collector.name,
        "ok" if result.complete and not result.errors else "partial",
        new=changes.new,
        changed=changes.changed,
        unchanged=changes.unchanged,
        gone=changes.gone,
        stale=changes.stale,
        errors=[f"{e.where}: {e.message}" for e in result.errors],
    )


def _mark_failed(
    store: Store, audit: AuditLog, actor: str, sync_id: int, source: str, error: str
) -> int:
    with store.transaction():
        stale = store.mark_source_failed(sync_id, source, error)
        audit.append(
            actor, "sync.source", source, {"sync_id": sync_id, "failed": error, "stale": stale}
        )
    return stale


def _source_rows(loaded: LoadedInventory) -> list[dict]:
    rows = []
    for cfg in loaded.inventory.sources:
        # model_dump holds only references (keyring:...), never values: invariant 3.
        rows.append(
            {
                "name": cfg.name,
                "type": cfg.type,
                "environment": getattr(cfg, "environment", None),
                "config": cfg.model_dump(mode="json"),
            }
        )
    return rows


def _agent_rows(loaded: LoadedInventory) -> list[dict]:
    return [
        {
            "name": a.name,
            "owner": a.owner,
            "environment": a.environment,
            "description": a.description,
            "identities": [i.model_dump(mode="json") for i in a.identities],
        }
        for a in loaded.inventory.agents
    ]


def _scan_workspaces(loaded: LoadedInventory, store: Store) -> list[ExposureHit] | None:
    """The agents' workspaces scanned for secrets in plain text (console/workspace_scan.py),
    as exposure evidence; None when the inventory declares no workspace (no scan ran, so the
    exposure findings stay as they were). In this process: a sync may run in a console's
    worker thread, where forking a pool is no place to be."""
    from console.findings import ExposureHit
    from console.workspace_scan import agent_of, inventory_workspaces, scan

    workspaces = inventory_workspaces(loaded)
    if not workspaces:
        return None
    result = scan([ws.path for ws in workspaces], store.known_fingerprints(), workers=1)
    for skip in result.skipped:
        log.info("workspace scan skipped %s: %s", skip.file, skip.reason)
    return [
        ExposureHit(
            file=hit.file,
            line=hit.line,
            detector=hit.detector,
            credential_id=hit.credential_id,
            agent=agent_of(hit.file, workspaces),
        )
        for hit in result.hits
    ]
