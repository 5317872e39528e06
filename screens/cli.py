"""`keyshift tui`, registered through the ``keyshift.commands`` entry point (console/ never
imports textual)."""

from __future__ import annotations

from pathlib import Path

import click

from console.cli import Context, pass_ctx
from console.errors import ConfigError


@click.command("tui")
@click.option(
    "--theme",
    type=click.Choice(["dark", "light"]),
    default=None,
    help="Colours (default: KEYSHIFT_THEME, else dark; ctrl+t switches). NO_COLOR is honoured.",
)
@click.option(
    "--keymap",
    "keymap_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A keymap file (binding id: keys); default: keymap.yaml in keyshift's config dir.",
)
@click.option(
    "--view",
    "start",
    default="creds",
    show_default=True,
    help="The view to open first: creds, agents, runs, audit, sources, findings or playbooks.",
)
@pass_ctx
def tui(ctx: Context, theme: str | None, keymap_path: Path | None, start: str) -> None:
    """The interactive console: `:` opens a view (creds, agents, runs, audit, sources, findings,
    playbooks), `/` filters, enter opens, esc goes back, ? lists every key."""
    import os

    # Textual paints at most 60 times a second unless told otherwise (read once, at import):
    # at 120 a page that lands just after a frame waits 8 ms for the next, not 17
    os.environ.setdefault("TEXTUAL_FPS", "120")

    from screens import views
    from screens.keymap import load_keymap

    view = views.find(start)
    if view is None:
        raise click.BadParameter(
            f"no view {start!r}: {', '.join(views.VIEWS)}", param_hint="--view"
        )
    chosen_theme = theme or os.environ.get("KEYSHIFT_THEME", "dark")
    if chosen_theme not in ("dark", "light"):
        raise ConfigError(f"KEYSHIFT_THEME={chosen_theme!r}", hint="dark or light")
    keymap = load_keymap(keymap_path)  # a bad keymap stops here, with file:line:col
    from screens.app import KeyshiftApp

    warning = None
    try:
        loaded = ctx.loaded
    except ConfigError as exc:
        # browsing what the store already knows needs no inventory; sync and rotate say why not
        loaded, warning = None, f"inventory not loaded: {exc.one_line()}"
    app = KeyshiftApp(
        ctx.store_for_sync,
        loaded,
        ctx.audit_for_sync,
        read_only=ctx.read_only,
        actor=ctx.actor(),
        startup_warning=warning,
        freeze_heap=True,
        theme=chosen_theme,
        keymap=keymap,
        start=view.name,
    )
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
