"""KeyshiftApp: the Textual app behind `keyshift tui`.

It is handed built services (store, loaded inventory, audit log, read-only flag, actor) and
never builds a provider client itself: long work (sync, rotation) goes through console
services in thread workers, and every screen re-reads the store afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from console.errors import ConfigError, ReadOnlyError
from screens.inventory import InventoryScreen

if TYPE_CHECKING:
    from console.audit import AuditLog
    from console.config import LoadedInventory
    from console.store import Store
    from console.sync import SyncProgress, SyncSummary


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeyshiftApp(App):
    TITLE = "keyshift"
    CSS_PATH = "keyshift.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Keys", key_display="?", id="app.help"),
    ]

    def __init__(
        self,
        store: Store,
        loaded: LoadedInventory | None,
        audit: AuditLog,
        *,
        read_only: bool = False,
        actor: str = "tui",
        now: Callable[[], datetime] = _utc_now,
        engine_factory: Callable[[], Any] | None = None,
        startup_warning: str | None = None,
        freeze_heap: bool = False,
    ) -> None:
        super().__init__()
        self.store = store
        self.loaded = loaded
        self.audit = audit
        self.read_only = read_only
        self.actor = actor
        self.now = now
        self._engine_factory = engine_factory
        self._engine: Any = None
        self._startup_warning = startup_warning
        # only for an app that owns its process (keyshift tui): frozen cycles are never freed
        self._freeze_heap = freeze_heap
        if read_only:
            self.sub_title = "read-only"

    def on_mount(self) -> None:
        self.push_screen(InventoryScreen())
        if self._freeze_heap:
            # What is alive once the first page is up (Textual, pydantic, the CSS) lives as
            # long as the process: freeze it out of the collector, so that a full collection
            # does not walk it in the middle of a keystroke (bench/tui.py: p95 ~85 -> ~45 ms)
            self.call_after_refresh(gc.freeze)
        if self._startup_warning:
            self.notify(self._startup_warning, severity="warning", timeout=10)

    # --- services (called from workers) ---------------------------------------------------

    def _require_inventory(self, action: str) -> LoadedInventory:
        if self.loaded is None:
            raise ConfigError(
                f"{action} needs the inventory file, which did not load",
                hint="fix it (keyshift --inventory PATH) and restart the TUI",
            )
        return self.loaded

    def sync(self, progress: SyncProgress) -> SyncSummary:
        if self.read_only:
            raise ReadOnlyError("sync")
        from console.sync import run_sync

        loaded = self._require_inventory("sync")
        return run_sync(loaded, self.store, self.audit, actor=self.actor, progress=progress)

    def engine(self) -> Any:
        """The rotation engine, built on first use (it is not needed to browse)."""
        if self.read_only:
            raise ReadOnlyError("rotate")
        if self._engine is None:
            if self._engine_factory is not None:
                self._engine = self._engine_factory()
            else:
                from console.rotation import RotationEngine

                loaded = self._require_inventory("rotate")
                self._engine = RotationEngine(self.store, self.audit, loaded)
        return self._engine

    # --- keys ----------------------------------------------------------------------------

    # Work that changes things and must run to its end: a rotation half-way would leave a
    # pending version with nobody to verify or roll it back; a sync, rows marked stale.
    UNINTERRUPTIBLE = ("rotate-run", "sync")

    def busy_with(self) -> str | None:
        for worker in self.workers:
            if worker.group in self.UNINTERRUPTIBLE and worker.is_running:
                return "a rotation" if worker.group == "rotate-run" else "a sync"
        return None

    async def action_quit(self) -> None:
        busy = self.busy_with()
        if busy:
            self.notify(f"{busy} is running; quit when it has finished", severity="warning")
            return
        await super().action_quit()

    def action_help(self) -> None:
        from screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) lists this screen's actions beside Textual's own."""
        yield from super().get_system_commands(screen)
        hidden = set(getattr(screen, "MUTATING", ())) if self.read_only else set()
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if binding.system or binding.action in seen or binding.action == "command_palette":
                continue
            if binding.action.split("(")[0] in hidden:
                continue
            seen.add(binding.action)
            node, action = active.node, binding.action
            yield SystemCommand(
                binding.description or action,
                f"key {binding.key_display or binding.key} · {binding.id or action}",
                lambda node=node, action=action: self.run_action(action, node),
            )
