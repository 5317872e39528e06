"""One credential: every field keyshift knows (never a value), who can reach it and through
which grant chain, and its rotation history with each run's steps."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from console.callers import agents_by_caller, arn_account, caller_agents
from console.model import Credential, UsageEvent
from console.vocabulary import NONE, no_use_text
from screens.base import KeyshiftScreen
from screens.format import ago, expires_text, expiry_state, short_fingerprint, when
from screens.theme import state_style, status_style
from screens.widgets.header import HeaderBar

HISTORY_RUNS = 20


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Rotation runs and steps may come as dicts or records; read either."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class DetailScreen(KeyshiftScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "rotate", "Rotate", id="detail.rotate"),
        Binding("H", "holders", "Holders", id="detail.holders"),
        Binding("c", "copy_id", "Copy id", id="detail.copy-id"),
    ]
    MUTATING = ("rotate",)

    def __init__(self, cred_id: str) -> None:
        super().__init__()
        self.cred_id = cred_id
        self.cred: Credential | None = None
        self.last_use: UsageEvent | None = None  # the latest use on record

    @property
    def crumb(self) -> str:
        return f"credential {self.cred.name if self.cred else self.cred_id}"

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        with VerticalScroll(id="detail-body"):
            yield Static(Text("reading …", style="dim"), id="meta", classes="section")
            yield Static(id="agents", classes="section")
            yield Static(id="history", classes="section")

    def on_screen_resume(self) -> None:
        self.render_detail()

    def render_detail(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="detail-read")
    def _read(self) -> None:
        store = self.ks.store
        try:
            cred = store.get_credential(self.cred_id)
            grants = store.grants_for_credential(self.cred_id) if cred else []
            self.last_use = next(iter(store.usage_for_credential(self.cred_id, limit=1)), None)
            runs = store.rotation_runs(credential_id=self.cred_id, limit=HISTORY_RUNS)
            steps = {_get(r, "id"): store.rotation_steps(_get(r, "id")) for r in runs}
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._show, cred, grants, runs, steps)

    def _last_use_by(self, use: UsageEvent) -> str:
        """Who made the latest use: the caller the evidence names and the agents that run as
        it (``console/callers.py``)."""
        loaded = self.ks.loaded
        by_caller = agents_by_caller(loaded.inventory.agents) if loaded else {}
        cred = self.cred
        account = (arn_account(cred.location) or arn_account(cred.native_id)) if cred else None
        agents = caller_agents(use.identity, by_caller, account)
        text = use.identity or ""
        if agents:
            text += f"  (agent {', '.join(agents)})"
        return text + (f"  {use.operation}" if use.operation else "")

    def _show(self, cred: Credential | None, grants: list, runs: list, steps: dict) -> None:
        if not self.alive:
            return
        if cred is None:
            self.query_one("#meta", Static).update(f"no credential {self.cred_id}")
            return
        self.cred = cred
        self.refresh_header()
        self.query_one("#meta", Static).update(self._meta(cred))
        self.query_one("#agents", Static).update(self._agents(grants))
        self.query_one("#history", Static).update(self._history(runs, steps))

    def _meta(self, cred: Credential) -> Table:
        now = self.ks.now()
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        expiry = expiry_state(cred, now)
        rows: list[tuple[str, Text | str]] = [
            ("name", Text(cred.name, style="bold")),
            ("id", cred.id),
            ("kind", cred.kind),
            ("source", cred.source),
            ("location", cred.location or "-"),
            ("owner", cred.owner or Text(NONE, style=state_style(self.app, "muted"))),
            ("environment", cred.environment or "-"),
            ("scope", cred.scope or "-"),
            ("sensitivity", cred.sensitivity or "-"),
            ("status", self._status(cred)),
            (
                "expires",
                Text(
                    expires_text(cred, now)
                    + (f"  ({when(cred.expires_at, now)})" if cred.expires_at else ""),
                    style=state_style(self.app, expiry or ""),
                ),
            ),
            ("created", when(cred.created_at, now)),
            ("last rotated", when(cred.rotated_at, now)),
            (
                "last used",
                Text(
                    when(cred.last_used_at, now, none=no_use_text(cred))
                    + (f"  via {cred.last_used_evidence}" if cred.last_used_evidence else "")
                    + (f"  ({cred.no_use_evidence} covers its whole life)"
                       if cred.last_used_at is None and cred.no_use_evidence else ""),
                    style=state_style(
                        self.app, "" if cred.last_used_at or cred.no_use_evidence else "muted"
                    ),
                ),
            ),
            *([("last used by", self._last_use_by(self.last_use))]
              if self.last_use and self.last_use.identity else []),
            ("rotator", cred.rotator or "-"),
            ("max age", f"{cred.max_age_days}d" if cred.max_age_days else "-"),
            ("fingerprint", short_fingerprint(cred.fingerprint)),
            ("version", cred.version or "-"),
            ("tags", ", ".join(f"{k}={v}" for k, v in sorted(cred.tags.items())) or "-"),
            ("first seen", when(cred.first_seen_at, now)),
            ("last seen", when(cred.last_seen_at, now)),
        ]
        if cred.gone_at:
            rows.append(("gone since", when(cred.gone_at, now)))
        for label, value in rows:
            table.add_row(label, value)
        return table

    def _status(self, cred: Credential) -> Text:
        if cred.status == "gone":
            return Text(
                "gone (no longer in its source; kept for history)", state_style(self.app, "gone")
            )
        if cred.status == "stale" or cred.stale_since:
            since = ago(cred.stale_since, self.ks.now(), none="?") if cred.stale_since else "?"
            return Text(
                f"{cred.status}, stale since {since}: {cred.stale_error or 'source failed'}",
                state_style(self.app, "stale"),
            )
        return Text(cred.status)

    def _agents(self, grants: list) -> Group:
        title = Text(f"\nwho can reach it ({len(grants)})", style="bold underline")
        if not grants:
            return Group(
                title, Text("  no agent holds a grant to it", style=state_style(self.app, "muted"))
            )
        table = Table(box=None, pad_edge=False, header_style="bold dim")
        table.add_column("AGENT", no_wrap=True)
        table.add_column("CAPABILITIES")
        table.add_column("GRANT CHAIN")
        table.add_column("USED")
        for g in sorted(grants, key=lambda g: g.agent):
            table.add_row(
                g.agent,
                ",".join(g.capabilities) or "-",
                " → ".join(g.chain) or "-",
                Text("yes", state_style(self.app, "used"))
                if g.used
                else Text("no use seen", state_style(self.app, "unused")),
            )
        return Group(title, table)

    def _history(self, runs: list, steps: dict) -> Group:
        title = Text(f"\nrotation history ({len(runs)})", style="bold underline")
        if not runs:
            return Group(
                title, Text("  never rotated by keyshift", style=state_style(self.app, "muted"))
            )
        now = self.ks.now()
        parts: list[Any] = [title]
        for run in runs:
            status = str(_get(run, "status", "?"))
            line = Text("  ")
            line.append(status, style=status_style(self.app, status))
            started = _get(run, "started_at") or _get(run, "created_at")
            line.append(f"  {when(started, now) if started else '-'}")
            line.append(f"  {_get(run, 'rotator', '') or ''}  by {_get(run, 'actor', '?')}")
            if _get(run, "pending_version"):
                line.append(f"  version {_get(run, 'pending_version')}")
            if _get(run, "error"):
                line.append(f"  {_get(run, 'error')}", style=state_style(self.app, "error"))
            parts.append(line)
            for step in steps.get(_get(run, "id"), []):
                s = str(_get(step, "status", "?"))
                row = Text("      ")
                row.append(f"{_get(step, 'step', '?'):<9}", style="bold")
                row.append(s, style=status_style(self.app, s))
                message = _get(step, "message") or _get(step, "error")
                if message:
                    row.append(f"  {message}", style="dim")
                parts.append(row)
        return Group(*parts)

    def action_rotate(self) -> None:
        if self.cred is None:
            return
        from screens.rotate import RotateScreen

        self.app.push_screen(RotateScreen(self.cred.id, self.cred.name))

    def action_holders(self) -> None:
        from screens.reach import ReachScreen

        self.app.push_screen(ReachScreen(credential=self.cred_id))

    def action_copy_id(self) -> None:
        self.app.copy_to_clipboard(self.cred_id)
        self.notify(f"copied {self.cred_id}")
