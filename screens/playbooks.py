"""`:playbooks` (`:pb`): every playbook, one playbook with what it would select now, and a run
of one with live progress (console/playbooks/ does the work; this only asks and shows).

- The list: the built-ins, then the user's YAML files (a bad file is named in the status line
  and the built-ins still listed); `/` filters; enter opens one; `x` runs it, `d` dry-runs it.
- A playbook: its settings, its parameters and select()'s answer (each credential and why).
  `p` sets the parameters, an agent, an environment and a sensitivity chosen from lists; a
  playbook that needs one asks as it opens.
- A run: a confirmation lists what it will rotate (a dry run asks nothing: it changes
  nothing), then run_playbook in a thread the app owns (quit waits for it, like a rotation),
  its events feeding a progress bar and a table of steps; `s` stops (no new step starts, the
  ones in flight finish); a summary at the end. Manual steps and provider keys ask through
  TuiInteraction, as a single rotation does.
- Read-only: running is stripped (no key, no hint, no palette entry) and the views say so; a
  dry run stays, over a read-only store, as `keyshift playbook run --dry-run` does.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, ProgressBar, Select, Static

from console.errors import ConfigError, KeyshiftError
from console.model import Sensitivity
from screens.base import KeyshiftScreen
from screens.listview import ListScreen, Row, styled
from screens.prompts import TuiInteraction
from screens.theme import state_style
from screens.widgets.header import HeaderBar

if TYPE_CHECKING:
    from textual.app import App

    from console.playbooks import Playbook, PlaybookEvent, PlaybookResult, Selected

MAX_LISTED = 200  # a selection longer than this is counted, not drawn (a Rich table is slow)
READ_ONLY_NOTE = ("read-only: running is off; d dry-runs (plans against the servers, changes "
                  "nothing)")

# a step's or a run's status -> the meaning it is painted with (screens/theme.py)
MEANING = {
    "pending": "muted",
    "running": "running",
    "done": "done",
    "failed": "failed",
    "manual": "waiting",
    "skipped": "muted",
    "claimed-elsewhere": "scheduled",
    "completed": "ok",
    "partial": "warning",
    "stopped": "warning",
    "dry-run": "scheduled",
}


def pb_style(app: App, status: str) -> Style:
    return state_style(app, MEANING.get(status, ""))


def read_playbooks() -> tuple[dict[str, Playbook], str | None]:
    """Every playbook; with a bad user file, the built-ins and that file's error (one line)."""
    from console.playbooks import load_playbooks
    from console.playbooks.builtins import builtins

    try:
        return load_playbooks(), None
    except KeyshiftError as exc:
        return builtins(), exc.one_line()


def origin(pb: Playbook) -> str:
    return "built-in" if pb.builtin else Path(pb.source or "?").name


def params_text(pb: Playbook) -> str:
    """``agent`` for a required parameter, ``[sensitivity]`` for an optional one."""
    return " ".join(n if p.required and p.default is None else f"[{n}]"
                    for n, p in pb.params.items())


def missing_params(pb: Playbook, values: dict[str, str]) -> list[str]:
    return [n for n, p in pb.params.items()
            if p.required and p.default is None and not values.get(n)]


def plan_rows(pb: Playbook, selected: list[Selected]) -> list[dict[str, Any]]:
    """The steps the runner will number, in its order: manual steps before, the selection,
    manual steps after (console/playbooks/runner.py)."""
    rows: list[dict[str, Any]] = []
    for m in (m for m in pb.manual_steps if m.when == "before"):
        rows.append({"action": "manual", "credential_id": None, "name": m.text})
    rows += [{"action": s.action, "credential_id": s.credential_id,
              "name": s.name or s.credential_id or "", "rotation_run_id": s.rotation_run_id}
             for s in selected]
    for m in (m for m in pb.manual_steps if m.when == "after"):
        rows.append({"action": "manual", "credential_id": None, "name": m.text})
    for position, row in enumerate(rows, 1):
        row.update(position=position, status="pending", detail="")
    return rows


def selection_table(selected: list[Selected]) -> Table:
    table = Table(box=None, header_style="bold dim", pad_edge=False, expand=False)
    for label in ("#", "ACTION", "CREDENTIAL", "ID", "WHY"):
        table.add_column(label, no_wrap=label != "WHY")
    for s in selected[:MAX_LISTED]:
        ident = s.credential_id or ""
        if s.action == "finish" and s.rotation_run_id:
            ident += f" (run {s.rotation_run_id[:12]})"
        table.add_row(str(s.position), s.action, Text(s.name or "-", style="bold"), ident,
                      Text(s.reason or "", style="dim"))
    if len(selected) > MAX_LISTED:
        table.add_row("", "", Text(f"… and {len(selected) - MAX_LISTED} more", style="dim"),
                      "", "")
    return table


def summary_text(result: PlaybookResult) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items())) or "nothing to do"
    return f"playbook {result.playbook} run {result.run_id[:12]}: {result.status} ({counts})"


# --- the list ---------------------------------------------------------------------------------


class PlaybooksScreen(ListScreen):
    view_name = "playbooks"
    NOUN = "playbooks"
    NOUN_ONE = "playbook"
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("name", "PLAYBOOK"),
        ("origin", "FROM"),
        ("selects", "SELECTS"),
        ("params", "PARAMS"),
        ("concurrency", "CONCURRENCY"),
        ("on_failure", "ON FAILURE"),
        ("manual", "MANUAL STEPS"),
        ("description", "DOES"),  # the long one last
    ]
    FIELDS = ("name", "origin", "selects", "kind", "action", "params", "on_failure",
              "description")
    MUTATING: ClassVar[tuple[str, ...]] = ("run",)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="playbooks.open"),
        Binding("x", "run", "Run", id="playbooks.run"),
        Binding("d", "dry_run", "Dry run", id="playbooks.dry-run"),
    ]

    def __init__(self, filter_text: str = "") -> None:
        super().__init__(filter_text)
        self.books: dict[str, Playbook] = {}
        self.load_error: str | None = None

    def read_rows(self) -> list[Row]:
        books, error = read_playbooks()
        self.books, self.load_error = books, error  # read by status_extra once _loaded lands
        return [
            {
                "name": pb.name,
                "origin": origin(pb),
                "selects": pb.selection.describe(),
                "kind": pb.selection.kind,
                "action": pb.action,
                "params": params_text(pb),
                "concurrency": str(pb.concurrency),
                "on_failure": pb.on_failure,
                "manual": str(len(pb.manual_steps)),
                "description": pb.description,
            }
            for pb in books.values()
        ]

    def cells(self, row: Row) -> list[Text | str]:
        app = self.app
        return [
            Text(row["name"], style="bold"),
            styled(row["origin"], app, "muted" if row["origin"] == "built-in" else "accent"),
            row["selects"],
            row["params"] or styled("-", app, "muted"),
            row["concurrency"],
            styled(row["on_failure"], app, "warning" if row["on_failure"] == "stop" else ""),
            row["manual"] if row["manual"] != "0" else styled("-", app, "muted"),
            row["description"],
        ]

    def key_of(self, row: Row) -> str:
        return str(row["name"])

    def status_extra(self) -> Text | None:
        text = Text()
        if self.load_error:
            text.append(f"your playbooks: {self.load_error}", style=state_style(self.app, "error"))
        if getattr(self.app, "read_only", False):
            if text:
                text.append("   ")
            text.append(READ_ONLY_NOTE, style=state_style(self.app, "warning"))
        return text or None

    def _push(self, then: str | None) -> None:
        row = self.current
        pb = self.books.get(row["name"]) if row else None
        if pb is not None:
            self.app.push_screen(PlaybookScreen(pb, then=then))

    def open_row(self, row: Row) -> None:
        self._push(None)

    def action_open(self) -> None:
        self._push(None)

    def action_run(self) -> None:
        self._push("run")

    def action_dry_run(self) -> None:
        self._push("dry-run")


# --- one playbook -------------------------------------------------------------------------------


class PlaybookScreen(KeyshiftScreen):
    """A playbook's settings, its parameters and what it would select now."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "run", "Run", id="playbook.run"),
        Binding("d", "dry_run", "Dry run", id="playbook.dry-run"),
        Binding("p", "params", "Parameters", id="playbook.params"),
        Binding("ctrl+l", "reload", "Reload", show=False, id="playbook.reload"),
    ]
    MUTATING: ClassVar[tuple[str, ...]] = ("run",)
    DEFAULT_CSS = """
    PlaybookScreen #pb-body { padding: 0 1; }
    """

    def __init__(self, pb: Playbook, *, then: str | None = None,
                 params: dict[str, str] | None = None) -> None:
        super().__init__()
        self.pb = pb
        self.then = then  # "run" / "dry-run": what opening it from the list asked for
        self.params: dict[str, str] = dict(params or {})
        self.selected: list[Selected] | None = None
        self.selected_at: datetime | None = None
        self.select_error: str | None = None
        self.reading = False
        self._stale = False  # a run was started from here: read the selection again on return

    @property
    def crumb(self) -> str:
        return f"playbook {self.pb.name}"

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        with VerticalScroll(id="pb-body"):
            yield Static(id="pb-meta", classes="section")
            yield Static(id="pb-selected-title")
            yield Static(id="pb-selected")

    def on_mount(self) -> None:
        self._draw_meta()
        then, self.then = self.then, None
        if then == "run":
            self.action_run()
        elif then == "dry-run":
            self.action_dry_run()
        elif missing_params(self.pb, self.params):
            self.action_params()
        else:
            self._select()

    def on_screen_resume(self) -> None:
        if self._stale:
            self._stale = False
            self._select()

    # --- drawing --------------------------------------------------------------------------

    def _draw_meta(self) -> None:
        pb, app = self.pb, self.app
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        rows: list[tuple[str, Any]] = [
            ("playbook", Text(pb.name, style="bold")),
            ("from", "built-in" if pb.builtin else (pb.source or "?")),
        ]
        if pb.description:
            rows.append(("does", pb.description))
        for n, (name, param) in enumerate(pb.params.items()):
            value = self.params.get(name) or param.default
            line = Text(f"{name} = ")
            if value:
                line.append(value, style=state_style(app, "accent"))
            else:
                need = "required" if param.required else "optional"
                line.append(f"not set ({need})",
                            style=state_style(app, "warning" if param.required else "muted"))
            if param.help:
                line.append(f"  {param.help}", style="dim")
            rows.append(("parameters" if n == 0 else "", line))
        grace = ("each credential's (its declaration, else the policy's)" if pb.grace is None
                 else f"{pb.grace.total_seconds() / 3600:g} h")
        rows += [
            ("selection", pb.selection.describe()),
            ("action", pb.action),
            ("order", pb.order),
            ("concurrency", str(pb.concurrency)),
            ("grace", grace),
            ("on failure", pb.on_failure),
        ]
        if not pb.manual_steps:
            rows.append(("manual steps", Text("none", style="dim")))
        for n, step in enumerate(pb.manual_steps, 1):
            rows.append(("manual steps" if n == 1 else "", f"{n}. {step.when}: {step.text}"))
        if getattr(app, "read_only", False):
            rows.append(("", Text(READ_ONLY_NOTE, style=state_style(app, "warning"))))
        for label, value in rows:
            grid.add_row(label, value)
        self.query_one("#pb-meta", Static).update(grid)

    def _draw_selection(self) -> None:
        title = self.query_one("#pb-selected-title", Static)
        body = self.query_one("#pb-selected", Static)
        if self.reading:
            title.update(Text("would select … (reading)", style="dim"))
            return
        if self.selected is None:
            line = Text("would select  ? ", style="bold")
            line.append(self.select_error or "", style=state_style(self.app, "error"))
            if missing_params(self.pb, self.params):
                line.append("   p sets the parameters", style="dim")
            title.update(line)
            body.update("")
            return
        verb = "finish (revoke the old value of)" if self.pb.action == "finish" else "rotate"
        title.update(Text(f"would {verb} {len(self.selected)} now", style="bold"))
        body.update(selection_table(self.selected) if self.selected else "")

    # --- parameters and selection -----------------------------------------------------------

    def action_reload(self) -> None:
        self._select()

    def action_params(self, after: str | None = None) -> None:
        self._read_choices(after)

    @work(thread=True, exclusive=True, group="playbook-read")
    def _read_choices(self, after: str | None) -> None:
        try:
            choices = read_choices(self.ks.store, self.ks.loaded, self.pb)
        except Exception as exc:  # the lists are a convenience: a typed value still works
            self.fail_from_thread(exc)
            choices = {}
        self.app.call_from_thread(self._ask_params, choices, after)

    def _ask_params(self, choices: dict[str, list[str]], after: str | None) -> None:
        if not self.alive:
            return

        def answered(values: dict[str, str] | None) -> None:
            if values is None:
                if after:
                    self.notify(f"playbook {self.pb.name} not run: its parameters were not set")
                elif self.selected is None and not self.reading:
                    self._draw_selection()
                return
            self.params = values
            self._draw_meta()
            self._select(after)

        self.app.push_screen(ParamsPrompt(self.pb, self.params, choices), answered)

    def _select(self, after: str | None = None) -> None:
        self.reading = True
        self._draw_selection()
        self._select_worker(after)

    @work(thread=True, exclusive=True, group="playbook-read")
    def _select_worker(self, after: str | None) -> None:
        from console.playbooks import select

        at = datetime.now(UTC)  # a run refuses what another run rotated since this moment
        try:
            selected = select(self.pb, self.params, store=self.ks.store, loaded=self.ks.loaded,
                              now=self.ks.now())
        except KeyshiftError as exc:
            self.app.call_from_thread(self._selected_now, None, exc.one_line(), after, at)
        except Exception as exc:
            self.fail_from_thread(exc)
            self.app.call_from_thread(self._selected_now, None, type(exc).__name__, after, at)
        else:
            self.app.call_from_thread(self._selected_now, selected, None, after, at)

    def _selected_now(self, selected: list[Selected] | None, error: str | None,
                      after: str | None, at: datetime) -> None:
        if not self.alive:
            return
        self.reading = False
        self.selected, self.select_error, self.selected_at = selected, error, at
        self._draw_selection()
        if after is None:
            return
        if selected is None:
            self.notify(f"playbook {self.pb.name} not run: {error}", severity="error", timeout=8)
        elif after == "dry-run":
            self._start(dry_run=True)
        else:
            self._confirm()

    # --- running --------------------------------------------------------------------------

    def _prepare(self, after: str) -> None:
        if missing_params(self.pb, self.params):
            self.action_params(after)
        else:
            self._select(after)  # what it selects now, not when the screen opened

    def action_run(self) -> None:
        busy = self.ks.busy_with()
        if busy:
            # the engine's claim would keep them apart, but one person cannot follow two
            self.notify(f"{busy} is running; run the playbook when it has finished")
            return
        self._prepare("run")

    def action_dry_run(self) -> None:
        self._prepare("dry-run")

    def _confirm(self) -> None:
        selected = self.selected or []
        if not selected and not self.pb.manual_steps:
            self.notify(f"playbook {self.pb.name} selects nothing now: nothing to run")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._start(dry_run=False)

        self.app.push_screen(PlaybookConfirm(self.pb, self.params, selected), answered)

    def _start(self, *, dry_run: bool) -> None:
        self._stale = True
        self.app.push_screen(
            PlaybookRunScreen(self.pb, self.params, self.selected or [], dry_run=dry_run,
                              selected_at=self.selected_at)
        )


def read_choices(store: Any, loaded: Any, pb: Playbook) -> dict[str, list[str]]:
    """The values a person picks from, for the parameters keyshift knows the meaning of."""
    from console.reach import agents

    out: dict[str, list[str]] = {}
    if "agent" in pb.params:
        out["agent"] = [a.name for a in agents(store, loaded)]
    if "environment" in pb.params:
        out["environment"] = store.environments()
    if "sensitivity" in pb.params:
        levels = [s.value for s in Sensitivity]
        out["sensitivity"] = [*levels, ",".join(levels[:2])]
    return out


class ParamsPrompt(ModalScreen[dict[str, str] | None]):
    """A playbook's parameters: a list to pick from where keyshift knows the values, a box
    where it does not. Dismisses with the values, checked, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="playbook-params.cancel"),
    ]
    DEFAULT_CSS = """
    ParamsPrompt { align: center middle; }
    ParamsPrompt .param-label { margin-top: 1; }
    ParamsPrompt #params-error { height: auto; }
    """

    def __init__(self, pb: Playbook, values: dict[str, str],
                 choices: dict[str, list[str]]) -> None:
        super().__init__(id="playbook-params")
        self.pb = pb
        self.values = values
        self.choices = choices
        self._ready = False

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-dialog"):
            yield Static(Text(f"Parameters of playbook {self.pb.name}", style="bold"),
                         id="prompt-label")
            for name, param in self.pb.params.items():
                need = "required" if param.required and param.default is None else "optional"
                label = Text(f"{name} ({need})", style="bold")
                if param.help:
                    label.append(f"  {param.help}", style="dim")
                yield Static(label, classes="param-label")
                current = self.values.get(name) or param.default or ""
                options = self.choices.get(name) or []
                if options:
                    yield Select([(v, v) for v in options], prompt=f"choose {name}",
                                 value=current if current in options else Select.NULL,
                                 id=f"param-{name}")
                else:
                    yield Input(value=current, placeholder=param.help or name,
                                id=f"param-{name}")
            yield Static(id="params-error")
            with Horizontal(id="prompt-buttons"):
                yield Button("OK (enter)", id="params-ok", variant="primary")
                yield Button("Cancel (esc)", id="params-cancel")

    def on_mount(self) -> None:
        fields = self._fields()
        (fields[0] if fields else self.query_one("#params-ok", Button)).focus()
        # a Select says Changed as it takes its first value: not a pick
        self.call_after_refresh(setattr, self, "_ready", True)

    def _fields(self) -> list[Input | Select]:
        return [self.query_one(f"#param-{name}") for name in self.pb.params]  # type: ignore[misc]

    def _after(self, widget: Any) -> None:
        """Focus the next field, or OK after the last."""
        fields = self._fields()
        index = fields.index(widget) if widget in fields else len(fields) - 1
        if index + 1 < len(fields):
            fields[index + 1].focus()
        else:
            self.query_one("#params-ok", Button).focus()

    @on(Select.Changed)
    def _picked(self, event: Select.Changed) -> None:
        if self._ready:
            # after the list has closed and handed the focus back to its Select
            self.call_after_refresh(self._after, event.select)

    @on(Input.Submitted)
    def _typed(self, event: Input.Submitted) -> None:
        fields = self._fields()
        if fields and event.input is fields[-1]:
            self._submit()
        else:
            self._after(event.input)

    @on(Button.Pressed, "#params-ok")
    def _submit(self) -> None:
        from console.playbooks import resolve_params

        values: dict[str, str] = {}
        for name, field in zip(self.pb.params, self._fields(), strict=True):
            value = field.value
            if isinstance(field, Select) and value is Select.NULL:
                continue
            text = str(value).strip()
            if text:
                values[name] = text
        try:
            resolve_params(self.pb, values)
        except KeyshiftError as exc:
            self.query_one("#params-error", Static).update(
                Text(exc.one_line(), style=state_style(self.app, "error")))
            return
        self.dismiss(values)

    @on(Button.Pressed, "#params-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PlaybookConfirm(ModalScreen[bool]):
    """Everything a run will touch, before it runs. Dismisses True to run."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Run", id="playbook-confirm.yes"),
        Binding("escape,n", "cancel", "Cancel", id="playbook-confirm.no"),
    ]
    DEFAULT_CSS = """
    PlaybookConfirm { align: center middle; }
    """

    def __init__(self, pb: Playbook, params: dict[str, str], selected: list[Selected]) -> None:
        super().__init__(id="playbook-confirm")
        self.pb, self.params, self.selected = pb, params, selected

    def compose(self) -> ComposeResult:
        pb = self.pb
        verb = "finish (revoke the old value of)" if pb.action == "finish" else "rotate"
        title = Text(f"Run playbook {pb.name}: {verb} {len(self.selected)}", style="bold")
        with Vertical(id="rotate-dialog"):
            yield Static(title, id="rotate-title")
            with VerticalScroll(id="rotate-body"):
                yield Static(self._body(), id="playbook-confirm-list")
            with Horizontal(id="rotate-buttons"):
                yield Button("Run (y)", id="playbook-go", variant="error")
                yield Button("Cancel (esc)", id="playbook-cancel")

    def _body(self) -> Table:
        pb = self.pb
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        if self.params:
            grid.add_row("parameters", " ".join(f"{k}={v}" for k, v in self.params.items()))
        grace = ("each credential's" if pb.grace is None
                 else f"{pb.grace.total_seconds() / 3600:g} h")
        grid.add_row("how", f"{pb.concurrency} at a time, in {pb.order} order; on failure "
                     f"{pb.on_failure}; grace {grace}")
        for step in pb.manual_steps:
            grid.add_row(f"manual ({step.when})",
                         Text(step.text, style=state_style(self.app, "warning")))
        if self.selected:
            grid.add_row("", "")
            grid.add_row("", selection_table(self.selected))
        return grid

    def on_mount(self) -> None:
        self.query_one("#playbook-cancel", Button).focus()  # nothing runs on a stray enter

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#playbook-go")
    def _go(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#playbook-cancel")
    def _cancel(self) -> None:
        self.dismiss(False)


# --- a run ------------------------------------------------------------------------------------


class PlaybookRunScreen(KeyshiftScreen):
    """One run of a playbook, live: a progress bar, every step with its status, a summary."""

    HOSTS = (DataTable,)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop", "Stop", id="playbook-run.stop"),
        Binding("enter", "open_run", "Open rotation", id="playbook-run.open"),
    ]
    COLUMNS = (("position", "#"), ("action", "ACTION"), ("name", "CREDENTIAL / STEP"),
               ("status", "STATUS"), ("detail", "DETAIL"))
    DEFAULT_CSS = """
    PlaybookRunScreen #pbrun-title { height: auto; padding: 0 1; }
    PlaybookRunScreen #pbrun-bar { height: 1; padding: 0 1; }
    PlaybookRunScreen #pbrun-steps { height: 1fr; }
    PlaybookRunScreen #pbrun-summary { height: auto; padding: 0 1; background: $panel; }
    """

    def __init__(self, pb: Playbook, params: dict[str, str], planned: list[Selected], *,
                 dry_run: bool = False, selected_at: datetime | None = None) -> None:
        super().__init__()
        self.pb, self.params, self.dry_run = pb, dict(params), dry_run
        # what the person confirmed is what runs (None: no confirmed selection, select anew)
        self.planned = list(planned) if selected_at is not None else None
        self.selected_at = selected_at
        self.stop_event = threading.Event()
        self.state = "running"  # running | stopping | finished | failed
        self.steps: dict[int, dict[str, Any]] = {r["position"]: r for r in plan_rows(pb, planned)}
        self.names = {s.credential_id: s.name for s in planned if s.credential_id}
        self.run_id: str | None = None
        self.result: PlaybookResult | None = None
        self.error: str | None = None

    @property
    def crumb(self) -> str:
        return "dry run" if self.dry_run else "run"

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        yield Static(id="pbrun-title")
        yield ProgressBar(total=len(self.steps) or None, show_eta=False, id="pbrun-bar")
        yield DataTable(id="pbrun-steps", cursor_type="row", zebra_stripes=True)
        yield Static(id="pbrun-summary")

    def on_mount(self) -> None:
        table = self.table
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        for position in sorted(self.steps):
            table.add_row(*self._cells(self.steps[position]), key=str(position))
        table.focus()
        self._draw_title()
        self._draw_summary()
        work = self._dry_work if self.dry_run else self._work
        if self.dry_run:
            # changes nothing at a provider: not the app's uninterruptible work
            self.app.run_worker(work, thread=True, group="playbook-dry-run",
                                exit_on_error=False)
        else:
            self.ks.run_uninterruptible("rotate-run", work)

    @property
    def table(self) -> DataTable:
        return self.query_one("#pbrun-steps", DataTable)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.state == "running"
        return super().check_action(action, parameters)

    # --- the worker (a thread) ---------------------------------------------------------------

    def _work(self) -> None:
        app: Any = self.app
        try:
            engine = app.engine()  # ReadOnlyError under --read-only; no inventory: ConfigError
            self._run(app.store, app.audit, self._loaded(), engine)
        except Exception as exc:
            app.call_from_thread(self._failed, exc)

    def _dry_work(self) -> None:
        from console.audit import AuditLog
        from console.store import Store

        app: Any = self.app
        reader = None
        try:
            # a dry run records nothing, as the CLI's over its read-only store
            reader = Store(app.store.path, read_only=True)
            self._run(reader, AuditLog(reader), self._loaded(), None)
        except Exception as exc:
            app.call_from_thread(self._failed, exc)
        finally:
            if reader is not None:
                reader.close()

    def _loaded(self) -> Any:
        loaded = self.ks.loaded
        if loaded is None:
            raise ConfigError(
                f"playbook {self.pb.name} needs the inventory file, which did not load",
                hint="fix it (keyshift --inventory PATH) and restart the TUI",
            )
        return loaded

    def _run(self, store: Any, audit: Any, loaded: Any, engine: Any) -> None:
        from console.playbooks import run_playbook

        app: Any = self.app
        person = TuiInteraction(app, lambda text: app.notify(text, timeout=15))
        result = run_playbook(
            self.pb, self.params, store=store, audit=audit, loaded=loaded, actor=app.actor,
            engine=engine, dry_run=self.dry_run, interaction=person, now=app.now(),
            on_event=self._on_event, stop=self.stop_event,
            selected=self.planned, selected_at=self.selected_at,
        )
        app.call_from_thread(self._finished, result)

    def _on_event(self, event: PlaybookEvent) -> None:
        # the runner's threads, one event at a time: each waits until the screen has it
        self.app.call_from_thread(self._event, event)

    # --- events (the UI thread) ---------------------------------------------------------------

    def _event(self, event: PlaybookEvent) -> None:
        if not self.alive:
            return
        if event.kind == "start":
            self.run_id = event.run_id
            self.query_one("#pbrun-bar", ProgressBar).update(total=event.total, progress=0)
            self._draw_title()
        elif event.kind in ("step-start", "progress", "step") and event.position is not None:
            row = self.steps.get(event.position)
            if row is None:  # the selection grew since it was confirmed
                row = {"position": event.position, "action": event.action or "",
                       "credential_id": event.credential_id, "status": "pending",
                       "name": self.names.get(event.credential_id or "")
                       or event.credential_id or "", "detail": ""}
                self.steps[event.position] = row
                self.table.add_row(*self._cells(row), key=str(event.position))
            if event.credential_id and event.credential_id != row.get("credential_id"):
                row["credential_id"] = event.credential_id
                row["name"] = self.names.get(event.credential_id) or event.credential_id
            if event.kind == "step-start":
                row["status"] = "running"
            elif event.kind == "progress":
                row["detail"] = event.message or ""
            else:
                row["status"] = event.status or "?"
                row["detail"] = event.error or event.message or ""
                row["action"] = event.action or row["action"]
                self.query_one("#pbrun-bar", ProgressBar).advance(1)
            if event.rotation_run_id:
                row["rotation_run_id"] = event.rotation_run_id
            self._update_row(row)
            self._draw_summary()

    def _cells(self, row: dict[str, Any]) -> list[Text | str]:
        app = self.app
        status = row["status"]
        name_style = "italic" if row["action"] == "manual" else "bold"
        return [
            str(row["position"]),
            row["action"],
            Text(row["name"] or "-", style=name_style),
            Text(status, style=pb_style(app, status)),
            Text(row["detail"] or "", style=state_style(app, "error") if status == "failed"
                 else "dim"),
        ]

    def _update_row(self, row: dict[str, Any]) -> None:
        key = str(row["position"])
        for (column, _label), cell in zip(self.COLUMNS, self._cells(row), strict=True):
            self.table.update_cell(key, column, cell, update_width=True)

    def _draw_title(self) -> None:
        line = Text(f"playbook {self.pb.name}", style="bold")
        if self.params:
            line.append("  " + " ".join(f"{k}={v}" for k, v in self.params.items()))
        if self.dry_run:
            line.append("  DRY RUN: plans each rotation, changes nothing",
                        style=state_style(self.app, "accent"))
        if self.run_id:
            line.append(f"  run {self.run_id[:12]}", style="dim")
        self.query_one("#pbrun-title", Static).update(line)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.steps.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    def _draw_summary(self) -> None:
        app = self.app
        line = Text()
        if self.state == "failed":
            line.append(f"not run: {self.error}", style=state_style(app, "failed"))
        elif self.result is not None:
            line.append(summary_text(self.result), style=pb_style(app, self.result.status))
            line.append("   esc back", style="dim")
        else:
            counts = self.counts()
            finished = sum(n for k, n in counts.items() if k not in ("pending", "running"))
            line.append(f"{finished} of {len(self.steps)} steps", style="bold")
            for status in ("running", "done", "failed", "manual", "skipped",
                           "claimed-elsewhere"):
                if counts.get(status):
                    line.append(" · ")
                    line.append(f"{counts[status]} {status}", style=pb_style(app, status))
            if self.state == "stopping":
                line.append("   stopping: no new step starts; the steps in flight finish",
                            style=state_style(app, "warning"))
            else:
                line.append("   s stops after the steps in flight", style="dim")
        self.query_one("#pbrun-summary", Static).update(line)

    def _finished(self, result: PlaybookResult) -> None:
        self.result = result
        self.state = "finished"
        text = summary_text(result)
        bad = result.status in ("failed", "partial", "stopped")
        self.app.notify(text, severity="warning" if bad else "information", timeout=10)
        if not self.alive:
            return
        # a step the runner never reported (it had none to report) keeps what it showed
        for step in result.steps:
            row = self.steps.get(step.position)
            if row is not None and row["status"] in ("pending", "running"):
                row["status"] = step.status
                row["detail"] = step.error or step.detail or ""
                self._update_row(row)
        self._draw_summary()
        self.refresh_bindings()

    def _failed(self, error: BaseException) -> None:
        self.state = "failed"
        self.error = error.one_line() if isinstance(error, KeyshiftError) else (
            f"{type(error).__name__}")
        if self.alive:
            self.fail(error)
            self._draw_summary()
            self.refresh_bindings()
        else:
            self.app.notify(f"playbook {self.pb.name}: {self.error}", severity="error")

    # --- keys -----------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.state != "running":
            return
        self.stop_event.set()
        self.state = "stopping"
        self._draw_summary()
        self.refresh_bindings()

    def action_back(self) -> None:
        if self.state in ("running", "stopping"):
            self.notify("the playbook is running: s stops it once the steps in flight finish")
            return
        super().action_back()

    def action_open_run(self) -> None:
        table = self.table
        if not table.row_count or not 0 <= table.cursor_row < table.row_count:
            return
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        row = self.steps.get(int(key or 0))
        rid = row.get("rotation_run_id") if row else None
        if not rid or self.dry_run:
            self.notify("this step started no rotation")
            return
        from screens.runs import RunScreen

        self.app.push_screen(RunScreen(rid))

    @on(DataTable.RowSelected, "#pbrun-steps")
    def _selected(self) -> None:
        self.action_open_run()
