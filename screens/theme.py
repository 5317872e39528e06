"""keyshift's two themes and the colours of state, taken from the theme in force.

Every state colour (expired, failed, stale, done, ...) is read from the current theme's
variables (``$text-error``, ``$text-warning``, ``$text-success``, ...), so a theme change
recolours the table, the detail and the dialogs alike, and both themes are checked for
contrast by the tests. Under ``NO_COLOR`` Textual paints in monochrome; every state is also
a word on screen (``expired 3d ago``, ``stale``, ``failed``), never a colour alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from textual.color import Color
from textual.theme import Theme

if TYPE_CHECKING:
    from textual.app import App

DARK = Theme(
    name="keyshift-dark",
    primary="#4C9BE8",
    secondary="#8A94F0",
    accent="#F0A030",
    warning="#E8B93C",
    error="#F0605A",
    success="#56C271",
    foreground="#E4E6EB",
    background="#14171C",
    surface="#1B1F26",
    panel="#262C36",
    dark=True,
)

LIGHT = Theme(
    name="keyshift-light",
    primary="#1F5FAF",
    secondary="#4B44B8",
    accent="#A65300",
    warning="#8A5A00",
    error="#B3202A",
    success="#1B6E34",
    foreground="#1C2128",
    background="#FAFBFC",
    surface="#F1F3F6",
    panel="#DFE4EB",
    dark=False,
)

THEMES = {"dark": DARK, "light": LIGHT}

# meaning -> (theme variable, text style). The variables are Textual's readable-on-background
# variants of the theme's colours.
MEANINGS: dict[str, tuple[str, str]] = {
    "expired": ("text-error", "bold"),
    "failed": ("text-error", "bold"),
    "error": ("text-error", ""),
    "expiring": ("text-warning", ""),
    "warning": ("text-warning", ""),
    "stale": ("text-warning", "italic"),
    "waiting": ("text-warning", "bold"),
    "running": ("text-warning", ""),
    "done": ("text-success", ""),
    "ok": ("text-success", "bold"),
    "used": ("text-success", ""),
    "scheduled": ("text-primary", ""),
    "accent": ("text-accent", "bold"),
    "muted": ("foreground-muted", ""),
    "inactive": ("foreground-muted", ""),
    "unused": ("foreground-muted", "italic"),
    "gone": ("foreground-disabled", "strike"),
    "marked": ("text-accent", "bold"),
}

# run and step statuses (console.model.RunStatus, StepStatus) -> meaning
STATUS_MEANING = {
    "pending": "muted",
    "started": "running",
    "running": "running",
    "retrying": "running",
    "done": "done",
    "failed": "failed",
    "waiting": "waiting",
    "scheduled": "scheduled",
    "completed": "ok",
    "awaiting-revoke": "ok",
    "rolled-back": "warning",
    "rollback-failed": "failed",
    "abandoned": "muted",
    "skipped": "muted",
}

_cache: dict[tuple[str, str], Style] = {}


def theme_color(app: App, variable: str) -> Color:
    """A theme variable as an opaque colour (alpha blended over the background)."""
    variables = app.theme_variables or app.get_css_variables()
    background = Color.parse(variables.get("background", "#000000"))
    value = variables.get(variable) or variables.get("foreground", "#ffffff")
    if value.startswith("auto"):
        value = variables.get("foreground", "#ffffff")
    return background + Color.parse(value)


_PLAIN = Style()


def state_style(app: App, meaning: str, theme: str | None = None) -> Style:
    """The Rich style of a state (see MEANINGS) in the theme in force (or ``theme``, the
    one in force, when the caller has read it already); plain for ""."""
    if not meaning:
        return _PLAIN
    key = (theme or app.theme, meaning)
    style = _cache.get(key)
    if style is None:
        variable, text_style = MEANINGS[meaning]
        colour = theme_color(app, variable)
        style = Style.parse(text_style) if text_style else Style()
        style += Style(color=colour.rich_color)
        _cache[key] = style
    return style


def status_style(app: App, status: str) -> Style:
    return (
        state_style(app, STATUS_MEANING.get(status, ""))
        if status in STATUS_MEANING
        else Style(bold=True)
    )


def forget_styles() -> None:
    """Drop resolved styles (a theme was redefined)."""
    _cache.clear()
