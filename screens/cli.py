"""`keyshift tui`, registered through the ``keyshift.commands`` entry point (console/ never
imports textual)."""

from __future__ import annotations

import click

from console.cli import Context, pass_ctx
from console.errors import ConfigError


@click.command("tui")
@pass_ctx
def tui(ctx: Context) -> None:
    """The interactive console: inventory, filter (/), detail (enter), sync (s), rotate (r)."""
    from screens.app import KeyshiftApp

    warning = None
    try:
        loaded = ctx.loaded
    except ConfigError as exc:
        # browsing what the store already knows needs no inventory; sync and rotate say why not
        loaded, warning = None, f"inventory not loaded: {exc.one_line()}"
    app = KeyshiftApp(
        ctx.store,
        loaded,
        ctx.audit,
        read_only=ctx.read_only,
        actor=ctx.actor(),
        startup_warning=warning,
        freeze_heap=True,
    )
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
