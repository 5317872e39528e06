"""`keyshift scan [PATH ...]`: secrets in plain text in agents' workspaces.

Output and exit codes are a stable API: 0 no hit, 1 hits found, 2 usage error. A hit is file,
line, detector and, for a known credential, its id: never a value. With no PATH, the inventory's
workspaces and env files are scanned; known credentials are recognised by the fingerprints in
the store (without a store, only unknown secrets are found, and stderr says so).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from console.cli import Context, _err, _out, cli, pass_ctx, plain_console
from console.errors import UsageError
from console.workspace_scan import DEFAULT_MAX_FILE_BYTES, ScanResult, Workspace

HITS_EXIT = 1


@cli.command("scan")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--max-file-size",
    "max_bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FILE_BYTES,
    show_default=True,
    help="Skip (and report) files larger than this many bytes.",
)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes to scan with (default: one per CPU).")
@pass_ctx
def scan_cmd(
    ctx: Context, paths: tuple[Path, ...], fmt: str, max_bytes: int, workers: int | None
) -> None:
    """Find secrets in plain text: unknown ones (detect-secrets' plugins and filters) and
    known credentials (by fingerprint, never by value). PATH: files or directories; none
    means every workspace and env file the inventory declares for its agents. Exit 1 when
    anything is found."""
    from console.workspace_scan import agent_of, inventory_workspaces, scan

    workspaces: list[Workspace] = []
    if paths:
        for path in paths:
            if not path.exists() and not path.is_symlink():
                raise UsageError(f"no such file or directory: {path}")
        targets = list(paths)
    else:
        workspaces = inventory_workspaces(ctx.loaded)
        if not workspaces:
            raise UsageError(
                "no PATH given and the inventory declares no workspace",
                hint="name a directory, or add a workspace identity to an agent",
            )
        targets = [ws.path for ws in workspaces]
    if ctx.db_path.exists():
        known = ctx.reader.known_fingerprints()
    else:
        known = {}
        _err(f"keyshift: no store at {ctx.db_path}: known credentials are not recognised "
             "(run keyshift sync first)")
    result = scan(targets, known, max_file_bytes=max_bytes, workers=workers)

    if fmt == "json":
        body = result.as_json()
        if workspaces:
            for hit in body["hits"]:
                hit["agent"] = agent_of(hit["file"], workspaces)
        _out(json.dumps(body, indent=2))
    else:
        _table(result, workspaces)
    if result.hits:
        sys.exit(HITS_EXIT)


def _table(result: ScanResult, workspaces: list[Workspace]) -> None:
    from rich.table import Table

    from console.workspace_scan import agent_of

    if result.hits:
        table = Table(box=None, pad_edge=False, header_style="bold")
        columns = ["FILE:LINE", "DETECTOR", "CREDENTIAL"] + (["AGENT"] if workspaces else [])
        for col in columns:
            table.add_column(col, no_wrap=True)
        for hit in result.hits:
            row = [f"{hit.file}:{hit.line}", hit.detector, hit.credential_id or "(unknown)"]
            if workspaces:
                row.append(agent_of(hit.file, workspaces) or "-")
            table.add_row(*row)
        plain_console().print(table)
    for skip in result.skipped:
        detail = f" ({skip.detail})" if skip.detail else ""
        _out(f"skipped {skip.file}: {skip.reason}{detail}")
    known = sum(1 for h in result.hits if h.known)
    files = len({h.file for h in result.hits})
    _out(
        f"{len(result.hits)} hits ({known} known credentials) in {files} files; "
        f"{result.scanned} files scanned, {len(result.skipped)} skipped, "
        f"{result.ignored} ignored"
    )
