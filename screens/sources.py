"""`:sources`: each source of the inventory with its last sync (when, state, error, counts)
and what the store holds of it now. `s` syncs the source under the cursor, `S` all of them.
Sync only reads the providers, so it stays on under --read-only."""

from __future__ import annotations

import time
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from screens.format import ago
from screens.listview import ListScreen, Row, styled
from screens.theme import state_style

STATE_MEANING = {"ok": "ok", "partial": "warning", "failed": "failed"}
PROGRESS_EVERY = 0.2


class SourcesScreen(ListScreen):
    view_name = "sources"
    NOUN = "sources"
    NOUN_ONE = "source"
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("name", "SOURCE"),
        ("type", "TYPE"),
        ("state", "STATE"),
        ("synced", "LAST SYNC"),
        ("present", "CREDENTIALS"),
        ("stale_now", "STALE"),
        ("changes", "LAST CHANGES"),
        ("error", "ERROR"),
    ]
    FIELDS = ("name", "type", "state", "error")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sync_one", "Sync source", id="sources.sync"),
        Binding("S", "sync_all", "Sync all", id="sources.sync-all"),
    ]

    def __init__(self, filter_text: str = "") -> None:
        super().__init__(filter_text)
        self.progress: dict[str, str] = {}

    def read_rows(self) -> list[Row]:
        states = self.ks.store.source_states()
        loaded = self.ks.loaded
        declared = [(s.name, s.type) for s in loaded.inventory.sources] if loaded else []
        names = {name for name, _ in declared}
        rows = []
        for name, kind in declared + [(n, "?") for n in sorted(states) if n not in names]:
            state = states.get(name, {})
            rows.append(
                {
                    "name": name,
                    "type": kind if name in names else "not in the inventory",
                    "state": state.get("status") or "never synced",
                    "at": state.get("at"),
                    "present": state.get("present") or 0,
                    "stale_now": state.get("stale_now") or 0,
                    "changes": (
                        f"new {state['new']} changed {state['changed']} gone {state['gone']}"
                        if "new" in state
                        else "-"
                    ),
                    "error": state.get("error") or "",
                    "errors": state.get("errors") or 0,
                }
            )
        return rows

    def cells(self, row: Row) -> list[Text | str]:
        now: datetime = self.ks.now()
        name = row["name"]
        state = self.progress.get(name) or row["state"]
        meaning = (
            STATE_MEANING.get(row["state"], "muted") if name not in self.progress else "running"
        )
        return [
            Text(name, style="bold"),
            row["type"],
            Text(state, style=state_style(self.app, meaning)),
            ago(row["at"], now, none="never") if row["at"] else styled("never", self.app, "muted"),
            str(row["present"]),
            styled(str(row["stale_now"]), self.app, "stale" if row["stale_now"] else "muted"),
            row["changes"],
            styled(row["error"], self.app, "error") if row["error"] else "",
        ]

    def key_of(self, row: Row) -> str:
        return str(row["name"])

    def action_sync_one(self) -> None:
        row = self.current
        if row is not None:
            self._start([row["name"]])

    def action_sync_all(self) -> None:
        self._start(None)

    def _start(self, only: list[str] | None) -> None:
        if any(w.group == "sync" and w.is_running for w in self.app.workers):
            self.notify("a sync is already running")
            return
        self.progress = {name: "syncing …" for name in (only or [r["name"] for r in self.rows])}
        self._fill()
        self.ks.run_uninterruptible("sync", lambda: self._sync(only))

    def _sync(self, only: list[str] | None) -> None:
        last = 0.0

        def progress(source: str, phase: str, message: str) -> None:
            nonlocal last
            now = time.monotonic()
            if phase == "item" and now - last < PROGRESS_EVERY:
                return
            last = now
            text = {"start": "reading …", "item": "reading …", "done": "done"}.get(
                phase, f"FAILED: {message}"
            )
            self.app.call_from_thread(self._progress, source, text)

        try:
            summary = self.ks.sync(progress, only=only)
        except Exception as exc:
            self.fail_from_thread(exc)
            self.app.call_from_thread(self._finished, None)
            return
        self.app.call_from_thread(self._finished, summary)

    def _progress(self, source: str, text: str) -> None:
        self.progress[source] = text
        if self.alive:
            self._fill()

    def _finished(self, summary: object) -> None:
        self.progress = {}
        if summary is not None:
            status = getattr(summary, "status", "?")
            self.notify(
                f"sync {status}: errors {getattr(summary, 'error_count', 0)}",
                severity="information" if status == "ok" else "warning",
            )
        if self.alive:
            self.reload()
