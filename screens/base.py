"""What every full screen of the console shares: the header (breadcrumbs, badges, the keys
in force), `esc` back to the screen below, read-only stripping, and one way to report an
error (a notification, never a traceback)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input, TextArea

from console.errors import KeyshiftError
from console.redaction import redact_active

if TYPE_CHECKING:
    from screens.app import KeyshiftApp


class KeyshiftScreen(Screen):
    # `/` is a priority binding (handled the moment it arrives, before the keys typed after
    # it are passed to the focused table: a fast `/alpha` or a tmux burst lands whole in the
    # filter box); check_action lets a focused text box have its "/". `enter` in the filter
    # box is one too, for the keys typed after it: they belong to the table (`/alpha⏎q`).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="view.back", show=False),
        Binding("enter", "filter_done", "Done filtering", id="view.filter-done", show=False,
                priority=True),
        Binding("escape", "filter_clear", "Clear the filter", id="view.filter-clear",
                show=False, priority=True),
    ]
    # actions that change a provider: under --read-only they are stripped (no key, no hint,
    # no palette entry), and the header says read-only is on
    MUTATING: ClassVar[tuple[str, ...]] = ()
    view_name: ClassVar[str | None] = None  # set by the screens registered in screens.views

    @property
    def ks(self) -> KeyshiftApp:
        return self.app  # type: ignore[return-value]

    @property
    def crumb(self) -> str:
        """This screen's part of the breadcrumbs."""
        return self.view_name or ""

    header_note: str = ""  # shown at the right of the header (e.g. the audit chain's state)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter" and isinstance(self.app.focused, Input | TextArea):
            return False  # a "/" typed in a box is text (a path in a filter)
        if action in ("filter_done", "filter_clear"):
            # only in this screen's filter box: elsewhere enter and esc are what they were
            focused = self.app.focused
            return (isinstance(focused, Input) and focused.id == "filter"
                    and focused.screen is self and hasattr(self, "filter_submitted"))
        return not (action in self.MUTATING and getattr(self.app, "read_only", False))

    def action_filter_done(self) -> None:
        """enter in the filter box: finished by ``filter_submitted`` (``_leave_filter``)."""
        self._leave_filter(self.filter_submitted)  # type: ignore[attr-defined]

    def action_filter_clear(self) -> None:
        """esc in the filter box: emptied, closed and cleared by ``filter_cleared``, after
        the keys queued before esc, so none of them is left behind in a hidden box."""
        self._leave_filter(self.filter_cleared)

    def _leave_filter(self, then: Callable[[], None]) -> None:
        """The table takes the keys from now on, at once; ``then`` runs once the box and
        then this screen have handled the keys typed before, already queued to them."""
        box = self.app.focused
        table = getattr(self, "table", None)
        if not isinstance(box, Input) or table is None:
            return
        self.set_focus(table)
        box.call_later(self.call_later, then)

    def filter_cleared(self) -> None:
        """Empty and close the filter box, and show every row again (each screen with a
        filter box says how)."""
        raise NotImplementedError

    def action_back(self) -> None:
        """Back to the screen below; the first screen has nowhere to go back to."""
        if len([s for s in self.app.screen_stack if isinstance(s, KeyshiftScreen)]) > 1:
            self.app.pop_screen()

    @property
    def alive(self) -> bool:
        """Still on the stack: a worker's answer for a screen that was closed is dropped."""
        return self.is_attached and self in self.app.screen_stack

    def fail(self, error: BaseException) -> None:
        """Say what went wrong, in one line (called on the UI thread)."""
        if isinstance(error, KeyshiftError):
            message = error.one_line()
        else:  # a bug must not kill the console: name it, never a traceback
            message = redact_active(f"{type(error).__name__}: {error}")
        self.notify(message, severity="error", timeout=8)

    def fail_from_thread(self, error: BaseException) -> None:
        self.app.call_from_thread(self.fail, error)

    def refresh_header(self) -> None:
        from screens.widgets.header import HeaderBar

        for header in self.query(HeaderBar):
            header.update_hints()

    def set_header_note(self, note: str) -> None:
        self.header_note = note
        self.refresh_header()
