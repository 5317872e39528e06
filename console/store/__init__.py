"""The store: keyshift's only shared state, and the only package that writes SQL.

SQLite through sqlite-utils, in WAL mode with foreign keys on and a busy timeout. One class,
``Store``, assembled from one module per part so a newcomer finds each by name:

- ``schema``       forward-only migrations, frozen as they shipped
- ``rows``         column lists, time/JSON conversions, row <-> model
- ``base``         connections (one per thread) and transactions (writes serialised)
- ``sync``         agents, sources, and a source's listing applied in one transaction
- ``credentials``  reads, counts and pages of credentials; bulk insert
- ``plan``         how a filter becomes SQL (the walk and drive plans)
- ``grants``       grants and usage events
- ``runs``         the rotation journal: runs, steps, claims
- ``audit_rows``   audit rows (console/audit.py owns the chain)
- ``findings``     findings and their history (console/findings/ owns the rules)
- ``scorecard``    the reads `keyshift report` adds (use recorded, audit entries of an action)
- ``alerts``       alerts recorded once per dedupe key, and their delivery (console/alerts.py)
- ``metrics``      the aggregate reads the Prometheus metrics need (console/metrics.py)
- ``schedule``     the schedule's jobs (last runs, claims) and the credentials it holds back
- ``playbooks``    playbook runs and their steps (console/playbooks/ owns what they mean)
- ``incidents``    incidents and their checklist tasks (console/incidents/ owns what they mean)
- ``drills``       drill runs: the history of rehearsed incidents (console/drills/ owns them)

Threads: each thread gets its own connection (WAL lets the TUI's worker threads read while a
sync writes on another thread, without seeing half a transaction). Writes take a process-wide
lock and ``BEGIN IMMEDIATE``, so writers queue instead of failing on a lock upgrade, and another
keyshift process waits up to the busy timeout. ``:memory:`` is not supported (each connection
would see its own empty database): use a file in a temp dir.

Rows are never deleted from ``credentials``: a credential that leaves its source gets
``gone_at`` and status ``gone``; one whose source failed gets ``stale_since``/``stale_error``
(invariant 6). Datetimes are ISO-8601 UTC text of fixed width (so text order is time order);
JSON columns are text.

Search: ``credentials_fts`` is an FTS5 trigram index (substring match, ASCII case ignored) over
the columns in ``console.query.TEXT_SEARCH_COLUMNS``; ``credentials.search_text`` is the same
text lowercased in one generated column (one ``instr`` per row when scanning);
``credential_tags`` holds tags as rows for ``tag:k=v``. Triggers keep all three in sync. Every
sortable column has an index ``(<col> COLLATE NOCASE, id)``. How a query is turned into SQL,
and why it switches between walking a sort index and FTS, is explained at ``PlanBuilder``.
"""

from __future__ import annotations

from console.store.alerts import AlertRows
from console.store.audit_rows import AuditRows
from console.store.credentials import CredentialRows
from console.store.drills import DrillRows
from console.store.findings import FindingChanges, FindingRows
from console.store.grants import GrantRows
from console.store.incidents import IncidentRows
from console.store.metrics import MetricsRows
from console.store.playbooks import PlaybookRows
from console.store.rows import CONTENT_FIELDS, parse_ts, row_to_cred, ts, utcnow
from console.store.runs import RunRows
from console.store.schedule import ScheduleRows
from console.store.schema import MIGRATIONS, migrate, schema_version
from console.store.scorecard import ScorecardRows
from console.store.sync import SourceChanges, SyncRows


class Store(
    SyncRows,
    CredentialRows,
    GrantRows,
    RunRows,
    AuditRows,
    FindingRows,
    ScorecardRows,
    AlertRows,
    MetricsRows,
    PlaybookRows,
    ScheduleRows,
    IncidentRows,
    DrillRows,
):
    """Open (creating and migrating as needed) the store at ``path``."""


__all__ = [
    "CONTENT_FIELDS",
    "MIGRATIONS",
    "FindingChanges",
    "SourceChanges",
    "Store",
    "migrate",
    "parse_ts",
    "row_to_cred",
    "schema_version",
    "ts",
    "utcnow",
]
