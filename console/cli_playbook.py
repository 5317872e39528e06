"""`keyshift playbook ls|show|run`: named procedures over the rotation engine
(console/playbooks/).

Exit codes of `playbook run`: 0 every step done (or left to another process rotating the same
credential, or reported as needing a person), 1 some step failed (or the confirmation was
declined), 2 bad usage or a bad playbook file, 3 unknown playbook, credential or agent,
4 refused under --read-only, 130 stopped by Ctrl-C / SIGTERM (steps in flight finished).
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import click

from console.cli import Context, _confirm, _out, cli, pass_ctx
from console.errors import KeyshiftError, NotFoundError, UsageError

MAX_LISTED = 50
STOPPED_EXIT = 130


def _params(
    agent: str | None,
    credential: str | None,
    environment: str | None,
    sensitivity: str | None,
    expiring_within: str | None,
    extra: tuple[str, ...],
) -> dict[str, str]:
    params = {
        k: v
        for k, v in (("agent", agent), ("credential", credential), ("environment", environment),
                     ("sensitivity", sensitivity), ("expiring_within", expiring_within))
        if v is not None
    }
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r} is not KEY=VALUE",
                             hint="e.g. --param team=payments")
        params[key.strip().replace("-", "_")] = value
    return params


_PARAM_NAMES = ("agent", "credential", "environment", "sensitivity", "expiring_within", "extra")


def param_options(fn: Any) -> Any:
    """The playbook parameter options, handed to ``fn`` as one ``params`` dict."""

    @functools.wraps(fn)
    def packed(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _PARAM_NAMES}
        return fn(*args, params=_params(**given), **kwargs)

    wrapper: Any = packed
    for option in reversed([
        click.option("--agent", default=None, help="The agent (rotate-agent)."),
        click.option("--credential", default=None,
                     help="A credential's id, name or id tail (rotate-one)."),
        click.option("--environment", default=None, help="The environment (rotate-environment)."),
        click.option("--sensitivity", default=None,
                     help="Only these sensitivities, comma-separated (rotate-due)."),
        click.option("--expiring-within", "expiring_within", default=None,
                     help="A duration like 14d (rotate-due; default: schedule.expiry_warning)."),
        click.option("--param", "extra", multiple=True, metavar="KEY=VALUE",
                     help="A parameter of your own playbook (repeatable)."),
    ]):
        wrapper = option(wrapper)
    return wrapper


@cli.group("playbook")
def playbook_group() -> None:
    """Playbooks: select credentials and rotate them (or finish their revokes) in order, with
    concurrency, a grace period, a failure policy and manual steps. Built-ins plus your YAML
    files in <config dir>/playbooks/."""


@playbook_group.command("ls")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def playbook_ls(fmt: str) -> None:
    """Every playbook: the built-ins, then yours."""
    from console.playbooks import load_playbooks

    books = load_playbooks()
    if fmt == "json":
        _out(json.dumps([pb.as_dict() for pb in books.values()], indent=2))
        return
    width = max([len(n) for n in books] + [4])
    for pb in books.values():
        origin = "built-in" if pb.builtin else pb.source
        _out(f"{pb.name:<{width}}  {pb.selection.describe():<32}  {origin}")
        if pb.description:
            _out(f"{'':<{width}}  {pb.description}")


@playbook_group.command("show")
@click.argument("name")
@param_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def playbook_show(ctx: Context, name: str, params: dict[str, str], fmt: str) -> None:
    """A playbook's selection, order, concurrency, grace, failure policy and manual steps, and
    what it would select now (given its parameters). Changes nothing."""
    from console.playbooks import get_playbook, select

    pb = get_playbook(name)
    selected: list[Any] | None = None
    why_not: str | None = None
    try:
        store = ctx.reader
    except NotFoundError as exc:  # no store yet: the playbook itself is still worth showing
        store, why_not = None, exc.one_line()
    try:
        if store is not None:
            selected = select(pb, params, store=store, loaded=ctx.loaded,
                              now=datetime.now(UTC))
    except UsageError as exc:
        if params or not any(p.required for p in pb.params.values()):
            raise
        why_not = exc.one_line()  # no parameters given: say what it needs, show the rest
    if fmt == "json":
        data = pb.as_dict()
        data["selected"] = [s.as_dict() for s in selected] if selected is not None else None
        data["selected_error"] = why_not
        _out(json.dumps(data, indent=2))
        return
    _show_text(pb, selected, why_not)


def _show_text(pb: Any, selected: list[Any] | None, why_not: str | None) -> None:
    _out(f"playbook      {pb.name}  ({'built-in' if pb.builtin else pb.source})")
    if pb.description:
        _out(f"description   {pb.description}")
    for n, (pname, param) in enumerate(pb.params.items()):
        need = "required" if param.required else "optional"
        default = f", default {param.default}" if param.default is not None else ""
        _out(f"{'params' if n == 0 else '':<13} --{pname.replace('_', '-')} ({need}{default})"
             + (f": {param.help}" if param.help else ""))
    _out(f"selection     {pb.selection.describe()}")
    _out(f"action        {pb.action}")
    _out(f"order         {pb.order}")
    _out(f"concurrency   {pb.concurrency}")
    grace = ("each credential's (its declaration, else the policy's)" if pb.grace is None
             else f"{pb.grace.total_seconds() / 3600:g} h")
    _out(f"grace         {grace}")
    _out(f"on failure    {pb.on_failure}")
    if not pb.manual_steps:
        _out("manual steps  none")
    for n, step in enumerate(pb.manual_steps, 1):
        _out(f"{'manual steps' if n == 1 else '':<13} {n}. {step.when}: {step.text}")
    if selected is None:
        _out(f"would select  ? ({why_not})")
        return
    _out(f"would select  {len(selected)}")
    for line in _listing(selected):
        _out(line)


def _listing(selected: list[Any]) -> list[str]:
    lines = []
    for s in selected[:MAX_LISTED]:
        what = s.credential_id or ""
        if s.action == "finish":
            what += f" (run {s.rotation_run_id[:12]})"
        lines.append(f"  {s.position:>3}. {s.action:<7} {what}"
                     + (f"  - {s.reason}" if s.reason else ""))
    if len(selected) > MAX_LISTED:
        lines.append(f"  ... and {len(selected) - MAX_LISTED} more")
    return lines


@playbook_group.command("run")
@click.argument("name")
@param_options
@click.option("--dry-run", is_flag=True,
              help="Plan every rotation against the servers and change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (scripts).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="json: one JSON object a line per event (also whenever stdout is not a "
              "terminal).")
@pass_ctx
def playbook_run(
    ctx: Context,
    name: str,
    params: dict[str, str],
    dry_run: bool,
    yes: bool,
    fmt: str,
) -> None:
    """Run a playbook. Lists what it will rotate and asks first, unless --yes (without a
    terminal, --yes is required). A terminal gets a progress bar; otherwise (or with
    --format json) each event is one JSON line: start, step-start, step (with its status:
    done, failed, skipped, manual, claimed-elsewhere), finish.

    Exit codes: 0 every step done (a credential another process is rotating, and a step that
    needs a person, are reported, not failures); 1 some step failed, or declined; 2 bad usage
    or a bad playbook file; 3 unknown playbook, credential or agent; 4 --read-only; 130
    stopped (Ctrl-C, SIGTERM: steps in flight finish first)."""
    from console.cli_rotation import _person
    from console.playbooks import get_playbook, resolve_params, run_playbook, select

    if not dry_run:
        ctx.require_writable(f"playbook run {name}")
    pb = get_playbook(name)
    params = resolve_params(pb, params)
    store = ctx.reader if dry_run else ctx.store
    audit = ctx.audit_reader() if dry_run else ctx.audit
    now = datetime.now(UTC)
    json_lines = fmt == "json" or not sys.stdout.isatty()
    selected: list | None = None  # what the person confirmed is what runs
    if not dry_run:
        selected = select(pb, params, store=store, loaded=ctx.loaded, now=now)
        if selected or pb.manual_steps:
            if not yes:
                verb = "finish (revoke the old value of)" if pb.action == "finish" else "rotate"
                click.echo(f"playbook {pb.name} will {verb} {len(selected)}:", err=json_lines)
                for line in _listing(selected):
                    click.echo(line, err=json_lines)
                for step in pb.manual_steps:
                    click.echo(f"  manual ({step.when}): {step.text}", err=json_lines)
            _confirm(f"Run playbook {pb.name}?", yes)
    stop = threading.Event()
    watcher = _JsonLines() if json_lines else _Bar()
    person = _person()
    if person is not None and isinstance(watcher, _Bar):
        person = _Pausing(person, watcher)
    with _stopping_on_signals(stop), watcher:
        result = run_playbook(
            pb, params, store=store, audit=audit, loaded=ctx.loaded, actor=ctx.actor(),
            dry_run=dry_run, interaction=person, now=now, on_event=watcher, stop=stop,
            selected=selected, selected_at=now if selected is not None else None,
        )
    if not json_lines:
        _summary(result)
    if result.status == "stopped":
        click.echo(f"keyshift: playbook {pb.name} stopped; steps in flight finished",
                   err=True)
        sys.exit(STOPPED_EXIT)
    failed = result.failed
    if failed:
        raise KeyshiftError(
            f"{len(failed)} of {len(result.steps)} steps of playbook {pb.name} failed "
            f"(run {result.run_id[:12]})",
            hint="each failed step's error is above; keyshift runs lists the rotations",
        )


class _JsonLines:
    def __enter__(self) -> _JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, event: Any) -> None:
        if event.kind == "progress":
            return  # a rotation's journal steps: `keyshift runs` has them
        click.echo(json.dumps(event.as_dict(), sort_keys=True))


class _Bar:
    """A Rich progress bar on the terminal, with a line per finished step above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(markup=False, emoji=False, highlight=False)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
            console=self.console, transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            self.task = self.progress.add_task(event.playbook, total=event.total)
        elif self.task is None:
            return
        elif event.kind == "progress":
            self.progress.update(self.task, description=f"{event.credential_id}: {event.message}",
                                 refresh=True)
        elif event.kind == "step":
            what = event.credential_id or "manual step"
            tail = event.error or event.message or ""
            self.progress.console.print(f"  {event.status:<17} {what}  {tail}".rstrip())
            self.progress.update(self.task, advance=1, description=event.playbook, refresh=True)


class _Pausing:
    """The person at the terminal, with the progress bar put away while they read and type."""

    def __init__(self, person: Any, bar: _Bar) -> None:
        self.person, self.bar = person, bar

    def _paused(self, ask: Any, text: str) -> Any:
        self.bar.progress.stop()
        try:
            return ask(text)
        finally:
            self.bar.progress.start()

    def show(self, text: str) -> None:
        self._paused(self.person.show, text)

    def ask_secret(self, prompt: str) -> str | None:
        return self._paused(self.person.ask_secret, prompt)  # type: ignore[no-any-return]

    def confirm(self, prompt: str) -> bool:
        return bool(self._paused(self.person.confirm, prompt))


def _summary(result: Any) -> None:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items())) or "nothing to do"
    _out(f"playbook {result.playbook} run {result.run_id[:12]}: {result.status} ({counts})")


class _stopping_on_signals:
    """Ctrl-C or SIGTERM sets ``stop``: no new step starts, the ones in flight finish."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        click.echo("keyshift: stopping after the steps in flight", err=True)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
