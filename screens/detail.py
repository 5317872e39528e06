"""One credential: every field keyshift knows (never a value), who can reach it and through
which grant chain, and its rotation history with each run's steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from console.errors import KeyshiftError, ReadOnlyError
from console.model import Credential
from console.vocabulary import UNKNOWN, status_text
from screens.format import STYLES, ago, expires_text, expiry_state, short_fingerprint, when
from screens.rotate import STATUS_STYLE
from screens.widgets.header import HeaderBar

if TYPE_CHECKING:
    from screens.app import KeyshiftApp

HISTORY_RUNS = 20


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Rotation runs and steps may come as dicts or records; read either."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class DetailScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="detail.back"),
        Binding("r", "rotate", "Rotate", id="detail.rotate"),
    ]
    MUTATING = ("rotate",)

    def __init__(self, cred_id: str) -> None:
        super().__init__(id="detail")
        self.cred_id = cred_id

    @property
    def ks(self) -> KeyshiftApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield HeaderBar("credential")
        with VerticalScroll(id="detail-body"):
            yield Static(id="meta", classes="section")
            yield Static(id="agents", classes="section")
            yield Static(id="history", classes="section")

    def on_mount(self) -> None:
        self.render_detail()

    def render_detail(self) -> None:
        try:
            cred = self.ks.store.get_credential(self.cred_id)
            if cred is None:
                self.query_one("#meta", Static).update(f"no credential {self.cred_id}")
                return
            grants = self.ks.store.grants_for_credential(self.cred_id)
            runs = self.ks.store.rotation_runs(credential_id=self.cred_id, limit=HISTORY_RUNS)
            steps = {_get(r, "id"): self.ks.store.rotation_steps(_get(r, "id")) for r in runs}
        except KeyshiftError as exc:
            self.notify(exc.one_line(), severity="error")
            return
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
            ("owner", cred.owner or Text("none", style=STYLES["muted"])),
            ("environment", cred.environment or "-"),
            ("scope", cred.scope or "-"),
            ("sensitivity", cred.sensitivity or "-"),
            ("status", self._status(cred)),
            (
                "expires",
                Text(
                    expires_text(cred, now)
                    + (f"  ({when(cred.expires_at, now)})" if cred.expires_at else ""),
                    style=STYLES[expiry] if expiry else "",
                ),
            ),
            ("created", when(cred.created_at, now)),
            ("last rotated", when(cred.rotated_at, now)),
            (
                "last used",
                Text(
                    when(cred.last_used_at, now, none=UNKNOWN)
                    + (f"  via {cred.last_used_evidence}" if cred.last_used_evidence else ""),
                    style="" if cred.last_used_at else STYLES["muted"],
                ),
            ),
            ("rotator", cred.rotator or "-"),
            ("status", status_text(cred)),
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
            return Text("gone (no longer in its source; kept for history)", STYLES["gone"])
        if cred.status == "stale" or cred.stale_since:
            since = ago(cred.stale_since, self.ks.now(), none="?") if cred.stale_since else "?"
            return Text(
                f"{cred.status}, stale since {since}: {cred.stale_error or 'source failed'}",
                STYLES["stale"],
            )
        return Text(cred.status)

    def _agents(self, grants: list) -> Group:
        title = Text(f"\nwho can reach it ({len(grants)})", style="bold underline")
        if not grants:
            return Group(title, Text("  no agent holds a grant to it", style=STYLES["muted"]))
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
                Text("yes", "green") if g.used else Text("no use seen", STYLES["never-used"]),
            )
        return Group(title, table)

    def _history(self, runs: list, steps: dict) -> Group:
        title = Text(f"\nrotation history ({len(runs)})", style="bold underline")
        if not runs:
            return Group(title, Text("  never rotated by keyshift", style=STYLES["muted"]))
        now = self.ks.now()
        parts: list[Any] = [title]
        for run in runs:
            status = str(_get(run, "status", "?"))
            style = STATUS_STYLE
            line = Text("  ")
            line.append(status, style=style.get(status, "bold"))
            started = _get(run, "started_at") or _get(run, "created_at")
            line.append(f"  {when(started, now) if started else '-'}")
            line.append(f"  {_get(run, 'rotator', '') or ''}  by {_get(run, 'actor', '?')}")
            if _get(run, "pending_version"):
                line.append(f"  version {_get(run, 'pending_version')}")
            if _get(run, "error"):
                line.append(f"  {_get(run, 'error')}", style="red")
            parts.append(line)
            for step in steps.get(_get(run, "id"), []):
                s = str(_get(step, "status", "?"))
                row = Text("      ")
                row.append(f"{_get(step, 'step', '?'):<9}", style="bold")
                row.append(s, style=style.get(s, ""))
                message = _get(step, "message") or _get(step, "error")
                if message:
                    row.append(f"  {message}", style="dim")
                parts.append(row)
        return Group(*parts)

    def action_back(self) -> None:
        self.dismiss()

    def action_rotate(self) -> None:
        if self.ks.read_only:
            self.notify(ReadOnlyError("rotate").one_line(), severity="warning")
            return
        cred = self.ks.store.get_credential(self.cred_id)
        if cred is None:
            return
        from screens.rotate import RotateScreen

        self.app.push_screen(RotateScreen(cred.id, cred.name), lambda _=None: self.render_detail())
