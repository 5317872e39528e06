"""The headless CLI. Its output and exit codes are a stable API for scripts.

Every error is one line on stderr and a non-zero exit (console/errors.py maps exit codes);
``-v`` adds detail, never a secret. Commands that change a provider refuse under
``--read-only``; sync, which only reads providers, is allowed.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from console import paths, redaction, secret_refs
from console.errors import Aborted, KeyshiftError, NotFoundError, ReadOnlyError, UsageError

log = logging.getLogger("keyshift")
F = TypeVar("F", bound=Callable[..., Any])

INTERNAL_ERROR_EXIT = 70
_VERBOSE = 0  # set from -v; decides whether an internal error shows its traceback


@dataclass
class Context:
    inventory_path: Path
    db_path: Path
    read_only: bool
    verbose: int
    _store: Any = None
    _loaded: Any = None
    _audit: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def loaded(self):  # type: ignore[no-untyped-def]
        if self._loaded is None:
            from console.config import load_inventory

            self._loaded = load_inventory(self.inventory_path)
        return self._loaded

    @property
    def store(self):  # type: ignore[no-untyped-def]
        """The store for a command that may write (opened read-only under --read-only)."""
        if self._store is None:
            from console.store import Store

            if self.read_only and not self.db_path.exists():
                raise NotFoundError(
                    f"no store at {self.db_path}, and --read-only may not create one",
                    hint="run keyshift sync first",
                )
            self._store = Store(self.db_path, read_only=self.read_only)
            self.closers.append(self._store.close)
        return self._store

    @property
    def store_for_sync(self):  # type: ignore[no-untyped-def]
        """The writable store, even under --read-only: sync (and the console, whose only
        store writes are sync's and the rotations read-only refuses) reads providers and
        writes nothing but keyshift's own store and audit log."""
        if self._store is None or self._store.read_only:
            from console.store import Store

            if self._store is not None:
                self._store.close()
            self._store = Store(self.db_path)
            self._audit = None
            self.closers.append(self._store.close)
        return self._store

    @property
    def audit_for_sync(self):  # type: ignore[no-untyped-def]
        from console.audit import AuditLog

        return AuditLog(self.store_for_sync)

    @property
    def reader(self):  # type: ignore[no-untyped-def]
        """The store for a command that only reads: opened read-only, so a read never
        creates, upgrades or switches the mode of a file (someone else's SQLite file, an
        older store); the writable store when this command already opened it."""
        if self._store is None:
            from console.store import Store

            if not self.db_path.exists():
                raise NotFoundError(
                    f"no store at {self.db_path}", hint="run keyshift sync first to create one"
                )
            self._store = Store(self.db_path, read_only=True)
            self.closers.append(self._store.close)
        return self._store

    @property
    def audit(self):  # type: ignore[no-untyped-def]
        if self._audit is None:
            from console.audit import AuditLog

            self._audit = AuditLog(self.store)
        return self._audit

    def audit_reader(self):  # type: ignore[no-untyped-def]
        from console.audit import AuditLog

        return AuditLog(self.reader)

    def require_writable(self, action: str) -> None:
        if self.read_only:
            raise ReadOnlyError(action)

    def actor(self) -> str:
        from console.audit import current_actor

        return current_actor()


pass_ctx = click.make_pass_decorator(Context)


def _setup_logging(verbose: int) -> None:
    """stderr at the chosen verbosity, plus an INFO log file in the data dir (the record a
    headless run leaves). Both pass through the redacting filter (invariant 1)."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        file_handler = logging.FileHandler(paths.private_file(paths.log_file()), encoding="utf-8")
    except OSError:
        file_handler = None  # an unwritable data dir must not stop a read-only command
    if file_handler:
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(file_handler)
    root.setLevel(min(level, logging.INFO))
    # Third-party clients stay at WARNING whatever -v says: botocore's and urllib3's DEBUG
    # records carry request and response bodies (secret values, keys) before keyshift has
    # seen the value, so the redacting filter could not catch them (invariant 1).
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "hvac", "asyncio", "markdown_it"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redaction.install_log_redaction(root)
    global _VERBOSE
    _VERBOSE = verbose


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--inventory",
    "inventory",
    type=click.Path(path_type=Path),
    default="sample_inventory.yaml",
    show_default=True,
    envvar="KEYSHIFT_INVENTORY",
    help="The inventory file: agents, sources, policies, declared credentials.",
)
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="KEYSHIFT_DB",
    help="The store (SQLite). Default: keyshift.db in the user data dir.",
)
@click.option(
    "--read-only",
    is_flag=True,
    envvar="KEYSHIFT_READ_ONLY",
    help="Refuse every change to a provider (sync, which only reads them, still works).",
)
@click.option("-v", "--verbose", count=True, help="More detail (-vv debug). Never a secret.")
@click.version_option(package_name="keyshift")
@click.pass_context
def cli(
    ctx: click.Context, inventory: Path, db: Path | None, read_only: bool, verbose: int
) -> None:
    """keyshift: the credentials your AI agents can touch, and what to do about them."""
    _setup_logging(verbose)
    obj = Context(
        inventory_path=inventory,
        db_path=db or paths.default_db(),
        read_only=read_only,
        verbose=verbose,
    )
    ctx.obj = obj
    ctx.call_on_close(lambda: [close() for close in reversed(obj.closers)])


def plain_console():  # type: ignore[no-untyped-def]
    """A Rich console for tables of store data. A pipe gets full rows (scripts grep them); a
    terminal gets rows cut to its width. Cells are text as it is: no markup (a name with
    brackets), no emoji codes (an ARN's ``:secret:`` is not a picture)."""
    from rich.console import Console

    return Console(
        width=None if sys.stdout.isatty() else 400, soft_wrap=False, markup=False,
        emoji=False, highlight=False,
    )


def _out(text: str = "") -> None:
    # Output is built from the store and the plan, which hold references, never values: it is
    # printed as it is (rewriting it would let a KV value equal to a word blind the output).
    click.echo(text)


def _err(text: str) -> None:
    click.echo(text, err=True)


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d")


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Aborted(f"{question} needs confirmation", hint="pass --yes in scripts")
    if not click.confirm(question, default=False):
        raise Aborted("cancelled")


# --- sandbox ----------------------------------------------------------------------------


@cli.group()
def sandbox() -> None:
    """The local sandbox: a real OpenBao dev server and a moto AWS server on loopback."""


@sandbox.command("up")
@click.option("--seed/--no-seed", default=False, help="Seed it from the inventory too.")
@pass_ctx
def sandbox_up(ctx: Context, seed: bool) -> None:
    """Start (or reuse) the sandbox."""
    ctx.require_writable("sandbox up")
    from console import sandbox as sb

    state = sb.up()
    ctx.audit.append(ctx.actor(), "sandbox.up", "sandbox", state.describe())
    _out(f"vault  {state.vault_addr}  (pid {state.vault_pid})")
    _out(f"aws    {state.moto_endpoint}  (pid {state.moto_pid})")
    if state.provider is not None:
        _out(f"keys   {state.provider.address}  (pid {state.provider.pid}: provider stand-in)")
    if seed:
        _seed(ctx)


@sandbox.command("seed")
@pass_ctx
def sandbox_seed(ctx: Context) -> None:
    """Plant the inventory's demo credentials in the running sandbox (idempotent)."""
    ctx.require_writable("sandbox seed")
    _seed(ctx)


def _seed(ctx: Context) -> None:
    from console import sandbox as sb

    summary = sb.seed(ctx.loaded.inventory, ctx.loaded.base_dir)
    detail = summary.as_dict()
    ctx.audit.append(ctx.actor(), "sandbox.seed", str(ctx.loaded.path), detail)
    _out("seeded: " + ", ".join(f"{k} {v}" for k, v in detail.items()))


@sandbox.command("down")
@pass_ctx
def sandbox_down(ctx: Context) -> None:
    """Stop what `sandbox up` started (by pid), and nothing else."""
    ctx.require_writable("sandbox down")
    from console import sandbox as sb

    stopped = sb.down()
    ctx.audit.append(ctx.actor(), "sandbox.down", "sandbox", {"stopped": stopped})
    _out("\n".join(f"stopped {s}" for s in stopped) if stopped else "nothing was running")


@sandbox.command("status")
def sandbox_status() -> None:
    """What runs, and whether it is healthy. Exit 0 only when all is healthy."""
    from console import sandbox as sb

    status = sb.status()
    for line in status.lines():
        _out(line)
    if not status.healthy:
        sys.exit(1)


@sandbox.command("env")
def sandbox_env() -> None:
    """Shell exports for the sandbox: eval "$(keyshift sandbox env)". Throwaway tokens only."""
    from console import sandbox as sb

    # Deliberately unredacted: the point is to hand the sandbox's throwaway tokens to a shell.
    click.echo(sb.env_exports())


# --- secrets ----------------------------------------------------------------------------


@cli.group("secret")
def secret_group() -> None:
    """keyshift's own secrets: keyring:<service>/<name>, env:NAME, file:PATH (0600) or
    credential:NAME (systemd). `set` writes the keyring; `keygen` makes a key."""


@secret_group.command("set")
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from stdin (scripts).")
@pass_ctx
def secret_set(ctx: Context, name: str, from_stdin: bool) -> None:
    """Store a secret as keyring:<service>/<name>. NAME is service/name. (env:, file: and
    credential: references are set outside keyshift; the error says how.)"""
    ctx.require_writable("secret set")
    if name.partition(":")[0] in ("env", "file", "credential"):
        raise secret_refs.not_writable(secret_refs.parse(name))
    if "/" not in name.removeprefix("keyring:"):
        raise UsageError(
            f"{name!r} is not service/name", hint="e.g. keyshift secret set vault/token"
        )
    if from_stdin:
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = click.prompt("value", hide_input=True, confirmation_prompt=True, err=True)
    from console.fingerprint import fingerprint

    ref = secret_refs.store(name, value)
    ctx.audit.append(ctx.actor(), "secret.set", ref, {"fingerprint": fingerprint(value)})
    _out(f"stored {ref}")


@secret_group.command("keygen")
@click.argument("ref")
@click.option("--force", is_flag=True, help="Replace a key already there (old fingerprints or "
              "audit entries made with it will no longer match).")
@pass_ctx
def secret_keygen(ctx: Context, ref: str, force: bool) -> None:
    """Make a new random key (32 bytes, hex) at REF: file:/path (written 0600) or
    keyring:<service>/<name>. Prints the reference and the key's id, never the key. Point
    KEYSHIFT_FINGERPRINT_KEY or KEYSHIFT_AUDIT_KEY at it to use it."""
    from console import own_keys

    ctx.require_writable("secret keygen")
    made = own_keys.generate(ref, force=force)
    # the key id names the key without revealing it, so the log can say which one was made
    ctx.audit.append(ctx.actor(), "secret.keygen", made.ref, {"key_id": made.key_id})
    _out(f"{made.ref} key id {made.key_id}")


# --- audit ------------------------------------------------------------------------------


@cli.group("audit")
def audit_group() -> None:
    """The keyed, hash-chained audit log."""


@audit_group.command("verify")
@click.option(
    "--anchor",
    "anchor_text",
    metavar="SEQ:HASH",
    help="An anchor kept elsewhere (keyshift audit anchor): entry SEQ must still have HASH, "
    "which catches entries cut from the end.",
)
@pass_ctx
def audit_verify(ctx: Context, anchor_text: str | None) -> None:
    """Check the chain: OK <count> entries, head <hash>; or the first bad seq and why.
    Needs the audit key ($KEYSHIFT_AUDIT_KEY, else the keyring entry) for keyed entries."""
    from console.audit import Anchor
    from console.errors import AuditError

    anchor = Anchor.parse(anchor_text) if anchor_text is not None else None
    result = ctx.audit_reader().verify(anchor)
    if result.ok:
        _out(result.message)
        return
    raise AuditError(result.message, hint=result.hint)


@audit_group.command("anchor")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--post",
    is_flag=True,
    help="Also send it as an audit-anchor alert to the inventory's alerts: channels (exit 1 "
    "when no channel took it; `schedule run` retries it).",
)
@pass_ctx
def audit_anchor(ctx: Context, fmt: str, post: bool) -> None:
    """The chain's head as SEQ:HASH, after a verify (a broken chain gets none). Keep it
    outside the store; `keyshift audit verify --anchor SEQ:HASH` later proves nothing up to it
    was cut or rewritten."""
    if not post:
        anchor = ctx.audit_reader().anchor()
        _out(json.dumps(anchor.to_json(), indent=2) if fmt == "json" else anchor.text)
        return
    from console.alerts import Alerter
    from console.audit import AuditLog

    config = ctx.loaded.inventory.alerts
    if config.webhook is None and not config.command:
        raise UsageError(
            "--post needs somewhere to post: the inventory has no alerts: channel",
            hint="add alerts: {webhook: {url: env:NAME}} or alerts: {command: [...]}",
        )
    if "audit-anchor" not in config.events:
        raise UsageError(
            "--post: the inventory's alerts: events leave out audit-anchor",
            hint="add audit-anchor to alerts.events, or leave events out (all of them)",
        )
    store = ctx.store_for_sync  # the alert is recorded, so a later pass can retry it
    anchor = AuditLog(store).anchor()
    key = f"audit-anchor:{anchor.text}"
    alerter = Alerter(config, store)
    alerter.raise_alert(
        "audit-anchor", "audit", dedupe_key=key, summary=f"audit chain head {anchor.text}",
        fields={"anchor": anchor.text, "seq": anchor.seq, "hash": anchor.hash,
                "key_id": anchor.key_id},
    )
    alerter.deliver_pending()
    _out(json.dumps(anchor.to_json(), indent=2) if fmt == "json" else anchor.text)
    row = store.alert_by_key(key) or {}
    if not row.get("delivered_at"):
        why = row.get("last_error") or "no send yet"
        raise KeyshiftError(
            f"anchor {anchor.text} recorded but not posted: {why}",
            hint="keyshift schedule run sends it again; check the alerts: channel",
        )


@audit_group.command("tail")
@click.option(
    "-n", "count", default=20, show_default=True, type=click.IntRange(min=1, max=1_000_000)
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def audit_tail(ctx: Context, count: int, fmt: str) -> None:
    """The last N audit entries."""
    _print_audit(ctx.audit_reader().tail(count), fmt)


@audit_group.command("ls")
@click.argument("words", nargs=-1, metavar="[FILTER]...")
@click.option(
    "-n", "limit", default=200, show_default=True, type=click.IntRange(min=1, max=1_000_000)
)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text")
@pass_ctx
def audit_ls(ctx: Context, words: tuple[str, ...], limit: int, fmt: str) -> None:
    """Search the audit log, newest first. FILTER words must all hold: actor:NAME,
    action:GLOB (rotation.*), target:TEXT, since:/until: a date or a duration (2h, 7d), any
    other word is looked for in the whole entry; ! before a word inverts it."""
    entries = ctx.audit_reader().search(" ".join(words), limit=limit)
    _print_audit(entries, fmt)


def _print_audit(entries: list[Any], fmt: str) -> None:
    if fmt == "json":
        _out(json.dumps([e.model_dump(mode="json") for e in entries], indent=2))
        return
    if fmt == "csv":
        import csv

        from console.audit_query import csv_safe

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["seq", "at", "actor", "action", "target", "detail", "hash"])
        for e in entries:
            detail = json.dumps(e.detail, sort_keys=True, separators=(",", ":"))
            writer.writerow(
                [e.seq, e.at.isoformat(), *map(csv_safe, (e.actor, e.action, e.target, detail)),
                 e.hash]
            )
        return
    for e in entries:
        detail = json.dumps(e.detail, sort_keys=True, separators=(",", ":"))
        if len(detail) > 120:
            detail = detail[:117] + "..."
        _out(
            f"{e.seq:>6}  {e.at:%Y-%m-%d %H:%M:%S}  {e.actor:<12} {e.action:<16} "
            f"{e.target}  {detail}"
        )


# --- inventory --------------------------------------------------------------------------


@cli.command("sync")
@click.option("--source", "only", multiple=True, help="Sync only this source (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def sync_cmd(ctx: Context, only: tuple[str, ...], fmt: str) -> None:
    """Read every source and update the store. Exit 0 ok, 1 when a source failed or was partial.
    Allowed under --read-only: sync only reads providers."""
    from console.findings.rules import SEVERITIES
    from console.sync import run_sync

    counts: dict[str, int] = {}

    def progress(source: str, phase: str, message: str) -> None:
        if fmt != "text":
            return
        if phase == "start":
            counts[source] = 0
            _err(f"{source}: reading ...")
        elif phase == "item":
            counts[source] += 1
        elif phase == "done":
            _err(f"{source}: {message}")
        elif phase == "failed":
            _err(f"{source}: FAILED {message}")

    summary = run_sync(
        ctx.loaded,
        ctx.store_for_sync,
        ctx.audit_for_sync,
        actor=ctx.actor(),
        only=list(only) or None,
        progress=progress,
    )
    if fmt == "json":
        out = summary.as_dict()
        out["findings"] = {"open": summary.findings, "error": summary.findings_error}
        _out(json.dumps(out, indent=2, default=str))
    else:
        for o in summary.outcomes:
            line = (
                f"{o.source:<16} {o.status:<8} new {o.new}  changed {o.changed}  "
                f"gone {o.gone}  stale {o.stale}  errors {len(o.errors)}"
            )
            _out(line)
            for error in o.errors[: 5 if ctx.verbose == 0 else None]:
                _out(f"    {error}")
        if summary.findings_error:
            _out(f"findings         failed   {summary.findings_error}")
        else:
            counts = ", ".join(f"{sev} {summary.findings[sev]}" for sev in SEVERITIES
                               if summary.findings.get(sev))
            _out(f"findings         open     {counts or 'none'} (keyshift findings)")
        _out(
            f"sync {summary.sync_id}: new {summary.total('new')}, "
            f"changed {summary.total('changed')}, "
            f"gone {summary.total('gone')}, stale {summary.total('stale')}, "
            f"errors {summary.error_count}"
        )
    if summary.status != "ok":
        sys.exit(1)


LS_COLUMNS = [
    "id",
    "name",
    "kind",
    "source",
    "owner",
    "environment",
    "agents",
    "expires_at",
    "rotated_at",
    "last_used_at",
    "status",
    "used",  # appended: scripts that read the columns by position keep working
]


def _cred_json(cred: Any) -> dict:
    from console.vocabulary import used_state

    # "used": used / never / unknown (console/vocabulary.py), so a script need not work it out
    return {**cred.model_dump(mode="json"), "used": used_state(cred)}


@cli.command("ls")
@click.argument("filter_words", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--sort", "sort", default="name", show_default=True)
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option("--limit", type=click.IntRange(min=1, max=10_000_000), default=None)
@pass_ctx
def ls_cmd(
    ctx: Context, filter_words: tuple[str, ...], fmt: str, sort: str, desc: bool, limit: int | None
) -> None:
    """List credentials, e.g. `keyshift ls env:prod owner:none` or `keyshift ls !kind:kv`."""
    from console.audit_query import csv_safe
    from console.query import parse

    query = parse(" ".join(filter_words))
    query.sort = sort
    query.descending = desc
    creds = ctx.reader.all_credentials(query)
    if limit is not None:
        creds = (c for i, c in enumerate(creds) if i < limit)
    if fmt == "json":
        _out(json.dumps([_cred_json(c) for c in creds], indent=2))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(LS_COLUMNS)
        for c in creds:
            row = _cred_json(c)
            writer.writerow(
                [
                    csv_safe(";".join(row[k]) if isinstance(row[k], list) else row[k])
                    for k in LS_COLUMNS
                ]
            )
        return
    _print_table(list(creds))


def _print_table(creds: list[Any]) -> None:
    from rich.table import Table

    from console.vocabulary import NEVER, no_use_text, owner_text, status_text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in (
        "NAME",
        "KIND",
        "SOURCE",
        "OWNER",
        "ENV",
        "AGENTS",
        "EXPIRES",
        "ROTATED",
        "LAST USED",
        "STATUS",
    ):
        table.add_column(col, no_wrap=True, overflow="ellipsis" if col == "AGENTS" else "ignore")
    for c in creds:
        table.add_row(
            c.name,
            c.kind,
            c.source,
            owner_text(c),
            c.environment or "-",
            ",".join(c.agents) or "-",
            _fmt_time(c.expires_at) if c.expires_at else NEVER,
            _fmt_time(c.rotated_at),
            _fmt_time(c.last_used_at) if c.last_used_at else no_use_text(c),
            status_text(c),
        )
    plain_console().print(table)
    click.echo(f"{len(creds)} credentials")


def _last_use(ctx: Context, uses: list[Any], account: str | None) -> dict | None:
    """The latest use on record: when, the evidence, the caller it names and the agents of
    the inventory that run as that caller (none without an inventory)."""
    from console.callers import agents_by_caller, caller_agents

    if not uses:
        return None
    use = uses[0]
    try:
        by_caller = agents_by_caller(ctx.loaded.inventory.agents)
    except KeyshiftError:
        by_caller = {}  # no inventory here: the caller is still named
    return {
        "at": use.at.isoformat(),
        "evidence": use.evidence,
        "identity": use.identity,
        "operation": use.operation,
        "agents": caller_agents(use.identity, by_caller, account),
    }


@cli.command("show")
@click.argument("cred_id", metavar="CREDENTIAL")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_ctx
def show_cmd(ctx: Context, cred_id: str, fmt: str) -> None:
    """Everything keyshift knows about one credential (never its value), and its rotations.
    CREDENTIAL is its id, its name, or the end of its id (`show openai-prod`)."""
    from console.callers import arn_account
    from console.cli_rotation import history_lines, run_json
    from console.refs import resolve_credential

    store = ctx.reader
    cred = resolve_credential(store, cred_id)
    grants = store.grants_for_credential(cred.id)
    runs = store.rotation_runs(cred.id, limit=20)
    last_use = _last_use(ctx, store.usage_for_credential(cred.id, limit=1),
                         arn_account(cred.location) or arn_account(cred.native_id))
    if fmt == "json":
        data = _cred_json(cred)
        data["last_use"] = last_use
        data["grants"] = [g.model_dump(mode="json") for g in grants]
        data["runs"] = [run_json(store, r) for r in runs]
        _out(json.dumps(data, indent=2))
        return
    for key, value in _cred_json(cred).items():
        if value in (None, [], {}):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        _out(f"{key:<20} {value}")
    if last_use and last_use["identity"]:  # evidence that names who used it
        by = last_use["identity"]
        agents = f" (agent {', '.join(last_use['agents'])})" if last_use["agents"] else ""
        _out(f"{'last used by':<20} {by}{agents}, {last_use['at']} ({last_use['evidence']})")
    if grants:
        _out("")
        _out("who can reach it:")
        for g in grants:
            used = "used" if g.used else "no use seen"
            _out(f"  {g.agent:<18} {','.join(g.capabilities):<24} {' -> '.join(g.chain)}  ({used})")
    if runs:
        _out("")
        _out("rotation history:")
        for line in history_lines(store, runs):
            _out(f"  {line}")


def _load_command_plugins() -> None:
    """Commands contributed through the entry-point group ``keyshift.commands``.

    This is how `keyshift tui` arrives: the Textual app lives in screens/, which console/ must
    never import (DESIGN.md), so screens registers its command here instead.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group="keyshift.commands"):
        if ep.name in cli.commands:
            continue
        try:
            command = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            log.warning("command plugin %s failed to load: %s", ep.name, exc)
            continue
        cli.add_command(command, ep.name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: typed errors become one line and their exit code; nothing else escapes."""
    from console import (  # noqa: F401  (their commands)
        cli_drill,
        cli_findings,
        cli_incident,
        cli_playbook,
        cli_reach,
        cli_report,
        cli_rotation,
        cli_scan,
        cli_schedule,
        cli_split,
    )

    _load_command_plugins()
    try:
        code = cli.main(args=argv, prog_name="keyshift", standalone_mode=False)
    except KeyshiftError as exc:
        _err(f"keyshift: {exc.one_line()}")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _err("keyshift: cancelled")
        sys.exit(1)
    except click.ClickException as exc:
        _err(f"keyshift: {exc.format_message()}")
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("keyshift: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        _err(redaction.redact_active(f"keyshift: internal error: {type(exc).__name__}: {exc}"))
        if _VERBOSE:
            import traceback

            _err(redaction.redact_active("".join(traceback.format_exception(exc))))
        else:
            _err("keyshift: run with -v for detail")
        sys.exit(INTERNAL_ERROR_EXIT)
    # outside standalone mode click returns a command's ``ctx.exit(N)`` / ``Exit(N)`` instead of
    # raising it: the exit code must still reach the shell
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
