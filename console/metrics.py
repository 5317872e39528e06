"""Prometheus metrics for unattended work: a textfile for node_exporter, or a loopback port.

Every figure is read from the store when collected, so counters survive restarts and two
processes on one store report the same numbers. Labels are low-cardinality words (a result,
a status, a severity, a source or job name): never a credential id, and never a value.

| metric | type | labels |
| --- | --- | --- |
| keyshift_rotations_total | counter | result: completed, failed (rolled back or abandoned) |
| keyshift_rotation_runs_active | gauge | status: running, awaiting-revoke, rollback-failed |
| keyshift_rotations_revoke_overdue | gauge | (awaiting revoke past the grace period) |
| keyshift_credentials_overdue | gauge | |
| keyshift_credentials_expiring | gauge | (within the schedule's expiry_warning, or expired) |
| keyshift_findings_open | gauge | severity: each of console.model.Severity |
| keyshift_source_last_sync_timestamp_seconds | gauge | source |
| keyshift_source_last_sync_age_seconds | gauge | source |
| keyshift_source_last_sync_success | gauge | source (1 when its newest sync did not fail) |
| keyshift_credentials_held | gauge | (the schedule's failure-loop holds) |
| keyshift_schedule_job_failures_in_row | gauge | job (only once the schedule has run) |
| keyshift_schedule_job_last_finished_timestamp_seconds | gauge | job |
| keyshift_alerts_undelivered | gauge | state: pending, given-up |

The rotation counters count runs in a terminal status, which a run never leaves: so they only
ever grow. A run awaiting its revoke is not yet completed (it is in the active gauge).
"""

from __future__ import annotations

import http.server
import ipaddress
import logging
import math
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from console.due import due_credentials
from console.errors import UsageError
from console.inventory import Alerts, Schedule
from console.model import ACTIVE_RUN_STATUSES, RunStatus, Severity
from console.redaction import redact_active
from console.store import parse_ts

if TYPE_CHECKING:
    from console.config import LoadedInventory
    from console.store import Store

log = logging.getLogger("keyshift.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# node_exporter runs as its own user and must read the file; it holds counts and names of
# sources, jobs and severities, nothing secret (see write_textfile)
TEXTFILE_MODE = 0o644

FAILED_STATUSES = (RunStatus.rolled_back.value, RunStatus.abandoned.value)


# --- the exposition format ------------------------------------------------------------------


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class Family:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            text = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
            yield f"{self.name}{{{text}}} {format_value(value)}" if text else (
                f"{self.name} {format_value(value)}"
            )


def render(families: Iterable[Family]) -> str:
    return "".join(line + "\n" for family in families for line in family.render())


# --- what is measured -----------------------------------------------------------------------


def collect(store: Store, loaded: LoadedInventory | None, now: datetime) -> str:
    """Every metric, as of ``now``, in the Prometheus text exposition format (0.0.4)."""
    schedule = loaded.inventory.schedule if loaded is not None else Schedule()
    alerts = loaded.inventory.alerts if loaded is not None else Alerts()
    families: list[Family] = []

    runs = store.rotation_run_counts()
    rotations = Family(
        "keyshift_rotations_total",
        "counter",
        "Rotation runs finished, by result: completed (the old value revoked) or failed "
        "(rolled back, or abandoned by a person).",
    )
    rotations.add(runs.get(RunStatus.completed.value, 0), result="completed")
    rotations.add(sum(runs.get(s, 0) for s in FAILED_STATUSES), result="failed")
    families.append(rotations)

    active = Family(
        "keyshift_rotation_runs_active",
        "gauge",
        "Rotation runs that still hold their credential, by status.",
    )
    for status in ACTIVE_RUN_STATUSES:
        active.add(runs.get(status, 0), status=status)
    families.append(active)

    overdue_revoke = Family(
        "keyshift_rotations_revoke_overdue",
        "gauge",
        "Runs awaiting revoke whose grace period has passed (the old value is still valid).",
    )
    overdue_revoke.add(store.revoke_overdue_count(now))
    families.append(overdue_revoke)

    due = due_credentials(store, loaded, now, schedule.expiry_warning)
    overdue = Family(
        "keyshift_credentials_overdue",
        "gauge",
        "Present credentials older than the maximum age for their sensitivity.",
    )
    overdue.add(sum(1 for d in due if d.reason == "overdue"))
    expiring = Family(
        "keyshift_credentials_expiring",
        "gauge",
        "Present credentials expiring within the schedule's expiry warning, or expired "
        "(an overdue one is counted as overdue only).",
    )
    expiring.add(sum(1 for d in due if d.reason == "expiring"))
    families += [overdue, expiring]

    open_by = store.open_findings_count_by_severity(now)
    findings = Family("keyshift_findings_open", "gauge", "Open findings, by severity.")
    for severity in Severity:
        findings.add(open_by.get(severity.value, 0), severity=severity.value)
    families.append(findings)

    families += _sources(store, loaded, now)
    families += _schedule(store, schedule)

    undelivered = store.undelivered_alert_counts(1 + alerts.retries)
    pending = Family(
        "keyshift_alerts_undelivered",
        "gauge",
        "Alerts not delivered yet: still being retried (pending) or out of attempts (given-up).",
    )
    for state in ("pending", "given-up"):
        pending.add(undelivered[state], state=state)
    families.append(pending)
    return render(families)


def _sources(store: Store, loaded: LoadedInventory | None, now: datetime) -> list[Family]:
    last_ok = store.last_successful_syncs()
    latest = store.latest_sync_statuses()
    if loaded is not None:
        # the inventory says which sources exist now; one it dropped stops being reported
        names = [s.name for s in loaded.inventory.sources]
    else:
        names = sorted({*last_ok, *latest, *(s["name"] for s in store.sources())})
    stamp = Family(
        "keyshift_source_last_sync_timestamp_seconds",
        "gauge",
        "When a sync last applied the source's listing (ok or partial), as a Unix time.",
    )
    age = Family(
        "keyshift_source_last_sync_age_seconds",
        "gauge",
        "Seconds since a sync last applied the source's listing.",
    )
    success = Family(
        "keyshift_source_last_sync_success",
        "gauge",
        "1 when the source's newest sync applied its listing, 0 when it failed or never ran.",
    )
    for name in names:
        at = last_ok.get(name)
        if at is not None:
            stamp.add(at.timestamp(), source=name)
            age.add(max(0.0, (now - at).total_seconds()), source=name)
        success.add(int(latest.get(name) in ("ok", "partial")), source=name)
    return [stamp, age, success]


def _schedule(store: Store, schedule: Schedule) -> list[Family]:
    held = Family(
        "keyshift_credentials_held",
        "gauge",
        "Credentials the schedule stopped retrying after failed rotations in a row (a failure "
        "loop) until a person releases them.",
    )
    held.add(len(store.credential_holds(schedule.failure_loop)))
    jobs = store.schedule_jobs()
    if not jobs:
        return [held]
    failures = Family(
        "keyshift_schedule_job_failures_in_row",
        "gauge",
        "Consecutive failed runs of a schedule job (0 after a success).",
    )
    finished = Family(
        "keyshift_schedule_job_last_finished_timestamp_seconds",
        "gauge",
        "When a schedule job last finished, as a Unix time.",
    )
    for job in jobs:
        failures.add(int(job["failures_in_row"] or 0), job=job["job"])
        last = parse_ts(job["last_finished"])
        if last is not None:
            finished.add(last.timestamp(), job=job["job"])
    return [held, failures, finished]


# --- the textfile -----------------------------------------------------------------------------


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a temp file in the same directory, renamed over it), so
    node_exporter never reads half a file. Mode 0644: node_exporter runs as another user, and
    the file holds counts and names only, never a value or a credential id."""
    path = Path(path)
    if path.suffix != ".prom":
        raise UsageError(
            f"{path} does not end in .prom",
            hint="node_exporter's textfile collector reads only *.prom files",
        )
    if not path.parent.is_dir():
        raise UsageError(
            f"no directory {path.parent} for the metrics textfile",
            hint="point it at node_exporter's --collector.textfile.directory",
        )
    # the temp name does not end in .prom, so the collector skips it while it is written
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), TEXTFILE_MODE)  # mkstemp makes 0600 whatever the umask
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(tmp)
        raise UsageError(
            f"could not write the metrics textfile {path}: {exc.strerror or exc}"
        ) from None


# --- the port ---------------------------------------------------------------------------------


@dataclass
class ServerHandle:
    host: str
    port: int
    _server: http.server.HTTPServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise UsageError(
            f"the metrics port listens on loopback only, not {host}",
            hint="use 127.0.0.1 (or ::1), and let node_exporter or a local agent scrape it",
        )
    return str(address)


def serve(port: int, collect_fn: Callable[[], str], host: str = "127.0.0.1") -> ServerHandle:
    """Answer GET /metrics with ``collect_fn()`` on a loopback address, from one thread (one
    scrape at a time, one store connection). ``port`` 0 picks a free port."""
    address = _loopback(host)

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 10  # a client that sends nothing does not hold the one thread

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self._answer(404, "not found: metrics are at /metrics\n")
                return
            try:
                text = collect_fn()
            except Exception as exc:  # one failed scrape, not a dead port
                message = redact_active(str(exc)) or type(exc).__name__
                log.warning("metrics collection failed: %s", message)
                self._answer(500, f"metrics collection failed: {message}\n")
                return
            self._answer(200, text)

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics: " + format, *args)

    class Server(http.server.HTTPServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    try:
        server = Server((address, port), Handler)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {address}:{port}: {exc.strerror or exc}",
            hint="choose another --metrics-port",
        ) from None
    thread = threading.Thread(
        target=server.serve_forever, name="keyshift-metrics", daemon=True
    )
    thread.start()
    return ServerHandle(address, server.server_address[1], server, thread)
