"""KeyshiftApp: the Textual app behind `keyshift tui`.

It is handed built services (store, loaded inventory, audit log, read-only flag, actor) and
never builds a provider client itself: long work (sync, rotation) goes through console
services in thread workers, and every screen reads the store off the UI thread.

Navigation is k9s's: `:` opens a view by name (screens/views.py), `esc` goes back, the
header shows the breadcrumbs. Every binding has an id; a keymap file remaps them.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

from console.errors import ConfigError, ReadOnlyError
from screens import views
from screens.palette import KeyshiftCommands
from screens.theme import THEMES

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
    COMMANDS: ClassVar[set[Any]] = {KeyshiftCommands, *App.COMMANDS}
    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: handled the moment it arrives, so the keys typed after it (a fast
        # `:audit⏎`) find the command bar open; check_action lets an input have its ":"
        Binding(
            "colon", "command_bar", "Command", key_display=":", id="app.command", priority=True
        ),
        Binding("question_mark", "help", "Keys", key_display="?", id="app.help"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False, id="app.theme"),
        Binding("q", "quit", "Quit", id="app.quit"),
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
        theme: str = "dark",
        keymap: dict[str, str] | None = None,
        start: str = "creds",
        start_filter: str = "",
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
        self._start = (start, start_filter)
        for defined in THEMES.values():
            self.register_theme(defined)
        self.theme = THEMES[theme].name
        if keymap:
            self.set_keymap(keymap)

    def on_mount(self) -> None:
        self.goto(*self._start)
        if self._freeze_heap:
            # What is alive once the first page is up (Textual, pydantic, the CSS) lives as
            # long as the process: freeze it out of the collector, so that a full collection
            # does not walk it in the middle of a keystroke (bench/tui.py: p95 ~85 -> ~45 ms)
            self.call_after_refresh(gc.freeze)
        if self._startup_warning:
            self.notify(self._startup_warning, severity="warning", timeout=10)

    # --- navigation ----------------------------------------------------------------------

    def goto(self, name: str, filter_text: str = "") -> None:
        """Open view ``name``: back to it when it is already open beneath (k9s keeps one of
        each), else on top of the current screen, so `esc` comes back."""
        busy = self.busy_with()
        if busy and isinstance(self.screen, ModalScreen):
            # a dialog that drives a rotation (or asks for its key) stays until it is done
            self.notify(f"{busy} is running in this dialog; wait for it to finish")
            return
        view = views.VIEWS[name]
        stack = self.screen_stack
        for index, screen in enumerate(stack):
            if getattr(screen, "view_name", None) == name:
                for _ in range(len(stack) - 1 - index):
                    self.pop_screen()
                if filter_text and hasattr(screen, "set_filter"):
                    screen.set_filter(filter_text)
                return
        self.push_screen(view.screen_class()(filter_text))

    def run_in_view(self, name: str, action: str) -> None:
        """An action of view ``name`` (from the palette): open the view, then run it there,
        on the widget that declares it when a hosted widget does."""
        self.goto(name)

        async def run() -> None:
            screen = self.screen
            for widget_class in getattr(screen, "HOSTS", ()):
                if any(
                    (b.action if isinstance(b, Binding) else b[1]) == action
                    for b in widget_class.BINDINGS
                ):
                    for widget in screen.query(widget_class):
                        await self.run_action(action, widget)
                        return
            await self.run_action(action, screen)

        self.call_after_refresh(run)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "command_bar" and isinstance(self.focused, Input):
            return False  # a ":" typed in a box is text
        return super().check_action(action, parameters)

    def action_command_bar(self) -> None:
        from screens.command_bar import CommandBar

        if isinstance(self.screen, ModalScreen):
            return  # a dialog stays in front until it is answered

        def chosen(picked: tuple[str, str] | None) -> None:
            if picked is not None:
                self.goto(*picked)

        self.push_screen(CommandBar(), chosen)

    def action_toggle_theme(self) -> None:
        self.theme = THEMES["light" if self.current_theme.dark else "dark"].name

    # --- services (called from workers) ---------------------------------------------------

    def _require_inventory(self, action: str) -> LoadedInventory:
        if self.loaded is None:
            raise ConfigError(
                f"{action} needs the inventory file, which did not load",
                hint="fix it (keyshift --inventory PATH) and restart the TUI",
            )
        return self.loaded

    def sync(self, progress: SyncProgress, only: list[str] | None = None) -> SyncSummary:
        """Sync reads providers and writes only keyshift's store: allowed under read-only."""
        from console.sync import run_sync

        loaded = self._require_inventory("sync")
        return run_sync(
            loaded, self.store, self.audit, actor=self.actor, progress=progress, only=only
        )

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

    def run_uninterruptible(self, group: str, work: Callable[[], None]) -> None:
        """Run ``work`` (a rotation, a sync) in a thread the app owns: closing the screen
        that started it neither cancels it nor hides it from busy_with() and quit."""
        self.run_worker(work, thread=True, group=group, exit_on_error=False)

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
        """Textual's own (theme, keys, screenshot, quit) and this screen's actions that are
        not a view's (the detail's, a run's): views and their actions come from
        KeyshiftCommands."""
        yield from super().get_system_commands(screen)
        if getattr(screen, "view_name", None):
            return
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if binding.system or binding.action in seen or not binding.id:
                continue
            if binding.id.startswith("app.") or not active.enabled:
                continue
            seen.add(binding.action)
            node, action = active.node, binding.action
            yield SystemCommand(
                binding.description or action,
                f"key {binding.key_display or binding.key} · {binding.id}",
                lambda node=node, action=action: self.run_action(action, node),
            )
