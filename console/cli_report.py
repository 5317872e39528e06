"""`keyshift report --out DIR`: the scorecard per agent and per owner, as Markdown and a
self-contained HTML page. Exit codes: 0 written, 2 bad usage."""

from __future__ import annotations

from pathlib import Path

import click

from console.cli import Context, cli, pass_ctx
from console.errors import UsageError


@cli.command("report")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The directory to write report.md and report.html into.")
@click.option("--format", "formats", default="md,html", show_default=True,
              help="Which to write: md, html, or both (comma-separated).")
@pass_ctx
def report_cmd(ctx: Context, out: Path, formats: str) -> None:
    """The scorecard per agent and per owner, with charts."""
    raise UsageError("keyshift report is not built yet")
