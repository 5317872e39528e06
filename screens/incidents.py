"""`:incidents` (`:inc`): every incident, and one incident's checklist, live.

- The list: id, title, kind, status, when opened, progress (tasks finished of all), and a
  drill marker for the incidents a drill opened. `/` filters; enter opens one; `e` exports it.
- An incident: a header with a running clock (time since open, or open -> closed once
  closed), the progress and the scope as it was snapshotted at open; the checklist by phase
  (detect / respond / recover) with each task's CSF 2.0 id, status (a word and a theme
  colour), who did it, started / done times, note and evidence; below it the task under the
  cursor in full, with the command keyshift suggests and what keyshift cannot show.
- Live: a worker re-reads the incident from the store every second while the screen is the
  one shown (never SQL on the UI thread), so tasks run from the CLI (`keyshift incident run`)
  or another console show up as they change. The clock ticks from the app's clock alone.
- Actions: `s` / `d` / `x` start, finish or skip the task under the cursor (a prompt for a
  note and evidence references, checked by console.incidents); `r` runs the automated tasks
  still open (a confirmation lists them; console.incidents.runner.run_incident runs in a
  thread the app owns, like a rotation); `C` closes; `e` exports Markdown into the data dir.
  Under --read-only every change is stripped (no key, no hint, no palette entry); export stays.

The screen takes the store, audit log and inventory it works on (default: the app's), so a
drill's incident opens over the drill's own store.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Static

from console.errors import KeyshiftError
from console.paths import write_private
from screens.base import KeyshiftScreen
from screens.format import aware
from screens.listview import ListScreen, Row, styled
from screens.prompts import ConfirmPrompt
from screens.theme import state_style
from screens.widgets.header import HeaderBar

if TYPE_CHECKING:
    from textual.app import App

LIVE_EVERY = 1.0  # seconds between two reads of an incident shown
INCIDENT_LIMIT = 500
TITLE_WIDTH = 58  # a task's title in the table; the panel below shows it whole
NOTE_WIDTH = 40
READ_ONLY_NOTE = "read-only: task changes, runs and close are off; e exports"

# a task's or an incident's status -> the meaning it is painted with (screens/theme.py)
MEANING = {
    "todo": "muted",
    "doing": "running",
    "done": "done",
    "skipped": "warning",
    "failed": "failed",  # an automated task whose last run failed (still doing)
    "waiting": "waiting",  # an automated task waiting for a person (still doing)
    "open": "waiting",
    "closed": "done",
}
TASK_VERBS = {"start": "Start", "done": "Finish", "skip": "Skip"}


def status_text(app: App, status: str) -> Text:
    return Text(status, style=state_style(app, MEANING.get(status, "")))


def short_time(value: str | None) -> str:
    """A stored UTC time as the table shows it: HH:MM:SS (the panel shows the whole)."""
    return f"{aware(_parse(value)):%H:%M:%S}" if value else "-"


def long_time(value: str | None) -> str:
    """A stored UTC time in full, to the second: 2026-11-20 10:45:00Z."""
    return f"{aware(_parse(value)):%Y-%m-%d %H:%M:%S}Z" if value else "-"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def clock(opened: str | None, closed: str | None, now: datetime) -> str:
    """How long the incident has been open, or was open: 1h 02m 03s."""
    if not opened:
        return "-"
    end = _parse(closed) if closed else now
    seconds = max(0, int((aware(end) - aware(_parse(opened))).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"
    return f"{days}d {text}" if days else text


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def evidence_text(evidence: list[dict[str, Any]]) -> str:
    return " ".join(f"{e['kind']}:{e['ref']}" for e in evidence)


def scope_line(scope: dict[str, Any]) -> str:
    if scope.get("kind") == "agent":
        agent = scope.get("agent") or {}
        return (f"agent {agent.get('name')}: {len(scope.get('credentials', []))} credential(s) "
                f"in reach, {len(scope.get('usage', []))} usage event(s) since "
                f"{long_time(scope.get('since'))}")
    if scope.get("kind") == "credential":
        cred = scope.get("credential") or {}
        return (f"credential {cred.get('credential')}: {len(scope.get('holders', []))} "
                f"holder(s), {len(scope.get('same_value', []))} other place(s) with its value, "
                f"{len(scope.get('usage', []))} usage event(s) since "
                f"{long_time(scope.get('since'))}")
    return "scope: -"


def automated(task: dict[str, Any]) -> bool:
    return (task.get("mode") or "manual") != "manual"


def open_automated(inc: dict[str, Any]) -> list[dict[str, Any]]:
    """What `r` would run now: console.incidents.runner's own plan (a pure function)."""
    from console.incidents.runner import plan

    return plan(inc)


def shown_status(task: dict[str, Any]) -> str:
    """The store's status, except that an automated task whose last run failed (it stays
    ``doing`` with a note starting ``failed:``) reads ``failed``, and one that waits for a
    person (``waiting:``: a removal to confirm, a provider key to rotate) reads ``waiting``:
    r runs it again."""
    note = task["note"] or ""
    if task["status"] == "doing" and note.startswith("failed:"):
        return "failed"
    if task["status"] == "doing" and note.startswith("waiting:"):
        return "waiting"
    return task["status"]


def export_path(incident_id: str) -> Path:
    from console.paths import data_dir, private_dir

    return private_dir(data_dir() / "exports") / f"{incident_id}.md"


# --- the list ---------------------------------------------------------------------------------


class IncidentsScreen(ListScreen):
    view_name = "incidents"
    NOUN = "incidents"
    NOUN_ONE = "incident"
    REFRESH_EVERY = 2.0  # a task finished elsewhere moves the progress column
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("id", "INCIDENT"),
        ("status", "STATUS"),
        ("progress", "TASKS"),
        ("opened", "OPENED (UTC)"),
        ("kind", "KIND"),
        ("drill_mark", "DRILL"),
        ("title", "TITLE"),  # the long one last
    ]
    FIELDS = ("id", "title", "kind", "status", "severity", "actor", "drill")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="incidents.open"),
        Binding("e", "export", "Export", id="incidents.export"),
    ]

    def read_rows(self) -> list[Row]:
        rows = []
        for inc in self.ks.store.incidents(limit=INCIDENT_LIMIT):
            rows.append({
                "id": inc["id"], "title": inc["title"], "kind": inc["kind"],
                "severity": inc["severity"], "status": inc["status"], "actor": inc["actor"],
                "opened_at": inc["opened_at"], "closed_at": inc["closed_at"],
                "tasks": inc["tasks"], "finished": inc["tasks_finished"],
                "drill": "yes" if inc["drill"] else "no",
            })
        return rows

    def cells(self, row: Row) -> list[Text | str]:
        app = self.app
        finished, total = row["finished"], row["tasks"]
        progress = styled(f"{finished}/{total}", app,
                          "done" if total and finished == total else "")
        opened = f"{aware(_parse(row['opened_at'])):%Y-%m-%d %H:%M}" if row["opened_at"] else "-"
        return [
            Text(row["id"], style="bold"),
            status_text(app, row["status"]),
            progress,
            opened,
            row["kind"],
            styled("drill", app, "accent") if row["drill"] == "yes" else styled("-", app, "muted"),
            row["title"],
        ]

    def key_of(self, row: Row) -> str:
        return str(row["id"])

    def status_extra(self) -> Text | None:
        text = Text()
        still = sum(1 for r in self.rows if r["status"] == "open")
        if still:
            text.append(f"{still} open", style=state_style(self.app, "waiting"))
        if getattr(self.app, "read_only", False):
            if text:
                text.append("   ")
            text.append(READ_ONLY_NOTE, style=state_style(self.app, "warning"))
        if not self.rows and self.loaded:
            text.append("open one with: keyshift incident open --agent NAME", style="dim")
        return text or None

    def action_open(self) -> None:
        row = self.current
        if row is not None:
            self.open_row(row)

    def open_row(self, row: Row) -> None:
        self.app.push_screen(IncidentScreen(row["id"]))

    def action_export(self) -> None:
        row = self.current
        if row is not None:
            export_incident(self, row["id"], self.ks.store, self.ks.audit)


def export_incident(screen: KeyshiftScreen, incident_id: str, store: Any, audit: Any) -> None:
    """Markdown into the data dir, in a thread (it reads the store and writes a file)."""

    def work_() -> None:
        from console import incidents

        try:
            data = incidents.export(store, audit, incident_id)
            path = export_path(incident_id)
            write_private(path, incidents.export_markdown(data))
        except Exception as exc:
            screen.fail_from_thread(exc)
            return
        screen.app.call_from_thread(
            screen.app.notify, f"{incident_id} exported to {path}", timeout=10)

    screen.app.run_worker(work_, thread=True, group="incident-export", exit_on_error=False)


# --- one incident ------------------------------------------------------------------------------


class IncidentScreen(KeyshiftScreen):
    """One incident: the clock, the checklist by phase, the task under the cursor in full."""

    HOSTS = (DataTable,)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start_task", "Start", id="incident.start"),
        Binding("d", "done_task", "Done", id="incident.done"),
        Binding("x", "skip_task", "Skip", id="incident.skip"),
        Binding("r", "run_auto", "Run automated", id="incident.run"),
        Binding("C", "close_incident", "Close", id="incident.close"),
        Binding("e", "export", "Export", id="incident.export"),
        Binding("ctrl+l", "reload", "Reload", show=False, id="incident.reload"),
    ]
    MUTATING: ClassVar[tuple[str, ...]] = (
        "start_task", "done_task", "skip_task", "run_auto", "close_incident")
    COLUMNS = (("position", "#"), ("phase", "PHASE"), ("csf", "CSF"), ("title", "TASK"),
               ("mode", "MODE"), ("status", "STATUS"), ("actor", "BY"),
               ("started", "STARTED"), ("done", "DONE"), ("note", "NOTE · EVIDENCE"))
    DEFAULT_CSS = """
    IncidentScreen #inc-head { height: auto; padding: 0 1; }
    IncidentScreen #inc-tasks { height: 1fr; }
    IncidentScreen #inc-task-scroll { height: auto; max-height: 12; background: $panel; }
    IncidentScreen #inc-task { height: auto; padding: 0 1; }
    """

    def __init__(self, incident_id: str, *, store: Any = None, audit: Any = None,
                 loaded: Any = None, where: str | None = None,
                 owns_store: bool = False) -> None:
        super().__init__()
        self.incident_id = incident_id
        self._store, self._audit, self._loaded = store, audit, loaded
        self._owns_store = owns_store  # a drill's store, opened for this screen alone
        self.where = where  # "drill <tag>": whose store this is, when not the app's
        self.incident: dict[str, Any] | None = None
        self.read_error: str | None = None
        self.run_state: str | None = None  # the automated run's last word, while it runs
        self._running = ""  # the automated task in flight
        self.run_events: list[str] = []  # the lines the last run showed, newest last
        self._timer: Timer | None = None

    # --- what it works on ---------------------------------------------------------------------

    @property
    def store(self) -> Any:
        return self._store if self._store is not None else self.ks.store

    @property
    def audit(self) -> Any:
        return self._audit if self._audit is not None else self.ks.audit

    @property
    def loaded(self) -> Any:
        return self._loaded if self._store is not None else self.ks.loaded

    @property
    def crumb(self) -> str:
        return f"incident {self.incident_id}" + (f" ({self.where})" if self.where else "")

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        yield Static(Text("reading …", style="dim"), id="inc-head")
        yield DataTable(id="inc-tasks", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="inc-task-scroll"):
            yield Static(id="inc-task")
        yield Static(id="status")

    def on_mount(self) -> None:
        table = self.table
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self._draw_status()
        self.reload()
        # one timer: the clock repaints from the app's clock, the store is read in a thread
        self._timer = self.set_interval(LIVE_EVERY, self._tick)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()  # not shown: no reads

    def on_unmount(self) -> None:
        if self._owns_store and self._store is not None:
            self._store.close()

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
        self.reload()

    @property
    def table(self) -> DataTable:
        return self.query_one("#inc-tasks", DataTable)

    def _tick(self) -> None:
        self._draw_head()
        self.reload()

    # --- reading (a thread) ---------------------------------------------------------------

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="incident-read")
    def _read(self) -> None:
        from console import incidents

        try:
            inc = incidents.load(self.store, self.incident_id)
        except KeyshiftError as exc:
            self.app.call_from_thread(self._unreadable, exc.one_line())
            return
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._show, inc)

    def _unreadable(self, error: str) -> None:
        if self.alive:
            self.read_error = error
            self._draw_head()

    def _show(self, inc: dict[str, Any]) -> None:
        if not self.alive:
            return
        self.read_error = None
        if inc == self.incident:
            return  # nothing changed: the cursor, scroll and panel stay as they are
        before = self.incident
        self.incident = inc
        self._fill(before)
        self._draw_head()
        self._draw_task()
        self._draw_status()
        self.refresh_bindings()

    # --- drawing --------------------------------------------------------------------------

    def _cells(self, task: dict[str, Any], first_of_phase: bool) -> list[Text | str]:
        app = self.app
        note = task["note"] or ""
        ev = evidence_text(task["evidence"])
        both = Text(cut(note, NOTE_WIDTH))
        if ev:
            if note:
                both.append(" · ", style="dim")
            both.append(cut(ev, NOTE_WIDTH), style=state_style(app, "accent"))
        return [
            str(task["position"]),
            Text(task["phase"].upper(), style="bold") if first_of_phase else Text(""),
            Text(task["csf"] or "-", style="dim"),
            Text(cut(task["title"], TITLE_WIDTH)),
            styled("auto", app, "scheduled") if automated(task) else styled("manual", app,
                                                                            "muted"),
            status_text(app, shown_status(task)),
            task["actor"] or "-",
            short_time(task["started_at"]),
            short_time(task["done_at"]),
            both,
        ]

    def _fill(self, before: dict[str, Any] | None) -> None:
        table = self.table
        tasks = self.incident["tasks"] if self.incident else []
        phase = None
        rows = []
        for task in tasks:
            rows.append(self._cells(task, task["phase"] != phase))
            phase = task["phase"]
        same_rows = before is not None and [t["position"] for t in before["tasks"]] == [
            t["position"] for t in tasks]
        if same_rows and table.row_count == len(rows):
            # a live update: change the cells, keep the cursor where the person left it
            for task, cells in zip(tasks, rows, strict=True):
                for (column, _label), cell in zip(self.COLUMNS, cells, strict=True):
                    table.update_cell(str(task["position"]), column, cell, update_width=True)
            return
        row = table.cursor_row
        table.clear()
        for task, cells in zip(tasks, rows, strict=True):
            table.add_row(*cells, key=str(task["position"]))
        if rows:
            table.move_cursor(row=min(max(row, 0), len(rows) - 1), animate=False)

    def _draw_head(self) -> None:
        head = self.query_one("#inc-head", Static)
        app = self.app
        inc = self.incident
        if inc is None:
            head.update(Text(self.read_error or "reading …",
                             style=state_style(app, "error") if self.read_error else "dim"))
            return
        line = Text()
        line.append(inc["id"], style="bold")
        line.append("  ")
        line.append(inc["title"], style="bold")
        line.append("  ")
        line.append(inc["status"], style=state_style(app, MEANING.get(inc["status"], "")))
        line.append(f"  severity {inc['severity'] or '-'}  {inc['kind']}", style="dim")
        now = self.ks.now()
        line.append("\n")
        if inc["closed_at"]:
            line.append("closed after ", style="dim")
            line.append(clock(inc["opened_at"], inc["closed_at"], now), style="bold")
            line.append(f"  ({long_time(inc['opened_at'])} -> {long_time(inc['closed_at'])})",
                        style="dim")
        else:
            line.append("open for ", style="dim")
            line.append(clock(inc["opened_at"], None, now),
                        style=state_style(app, "waiting"))
            line.append(f"  (since {long_time(inc['opened_at'])}, by {inc['actor']})",
                        style="dim")
        tasks = inc["tasks"]
        finished = sum(1 for t in tasks if t["status"] in ("done", "skipped"))
        line.append(f"   {finished}/{len(tasks)} tasks finished", style="bold")
        for status in ("doing", "done", "skipped"):
            n = sum(1 for t in tasks if t["status"] == status)
            if n:
                line.append(" · ")
                line.append(f"{n} {status}", style=state_style(app, MEANING[status]))
        line.append("\n")
        line.append(scope_line(inc["scope"]), style="dim")
        if self.read_error:
            line.append(f"   not re-read: {self.read_error}", style=state_style(app, "error"))
        head.update(line, layout=False)

    def current_task(self) -> dict[str, Any] | None:
        if self.incident is None:
            return None
        table = self.table
        tasks = self.incident["tasks"]
        if not tasks or not 0 <= table.cursor_row < len(tasks):
            return None
        return tasks[table.cursor_row]

    def _draw_task(self) -> None:
        panel = self.query_one("#inc-task", Static)
        task = self.current_task()
        if task is None:
            panel.update("")
            return
        app = self.app
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row(f"task {task['position']}",
                     Text(f"{task['title']}  ({task['phase']} · {task['csf']} · "
                          f"{task['step'] or '-'})"))
        state = status_text(app, shown_status(task))
        if shown_status(task) != task["status"]:
            state.append(f" (still {task['status']}: r runs it again)", style="dim")
        if task["owner"]:
            state.append(f"  owner {task['owner']}", style="")
        if task["actor"]:
            state.append(f"  by {task['actor']}", style="")
        if task["started_at"]:
            state.append(f"  started {long_time(task['started_at'])}", style="dim")
        if task["done_at"]:
            state.append(f"  finished {long_time(task['done_at'])}", style="dim")
        grid.add_row("status", state)
        if task["command"]:
            grid.add_row("command", Text(task["command"], style=state_style(app, "accent")))
        if task.get("limits"):
            grid.add_row("keyshift cannot", Text(task["limits"], style="dim"))
        if task["note"]:
            grid.add_row("note", task["note"])
        if task["evidence"]:
            grid.add_row("evidence", Text(evidence_text(task["evidence"]),
                                          style=state_style(app, "accent")))
        if task.get("rotation_run_id"):
            grid.add_row("rotation run", task["rotation_run_id"])
        panel.update(grid)

    def _draw_status(self) -> None:
        app = self.app
        line = Text()
        if self.run_state:
            line.append(self.run_state, style=state_style(app, "running"))
            line.append("   ")
        inc = self.incident
        if inc is not None and inc["status"] == "open":
            waiting = open_automated(inc)
            if waiting:
                line.append(f"{len(waiting)} automated task(s) open", style="bold")
                line.append("   r runs them", style="dim")
        if getattr(app, "read_only", False):
            if line:
                line.append("   ")
            line.append(READ_ONLY_NOTE, style=state_style(app, "warning"))
        elif not line:
            line.append("s start · d done · x skip the task under the cursor", style="dim")
        self.query_one("#status", Static).update(line, layout=False)

    @on(DataTable.RowHighlighted, "#inc-tasks")
    def _moved(self) -> None:
        self._draw_task()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if not allowed:
            return allowed
        if action in self.MUTATING and self.incident is not None \
                and self.incident["status"] != "open":
            return None  # shown dimmed: a closed incident no longer changes
        return allowed

    # --- task actions -----------------------------------------------------------------------

    def action_start_task(self) -> None:
        self._task_action("start")

    def action_done_task(self) -> None:
        self._task_action("done")

    def action_skip_task(self) -> None:
        self._task_action("skip")

    def _task_action(self, action: str) -> None:
        task = self.current_task()
        if task is None or self.incident is None:
            return
        if self.incident["status"] != "open":
            self.notify(f"incident {self.incident_id} is closed", severity="warning")
            return

        def answered(answer: tuple[str | None, list[str]] | None) -> None:
            if answer is not None:
                note, evidence = answer
                self.ks.run_uninterruptible(
                    "incident-task",
                    lambda: self._update(task["position"], action, note, evidence))

        self.app.push_screen(TaskPrompt(self.incident_id, task, action), answered)

    def _update(self, position: int, action: str, note: str | None,
                evidence: list[str]) -> None:
        from console import incidents

        try:
            inc = incidents.update_task(self.store, self.audit, self.incident_id, position,
                                        action, actor=self.ks.actor, note=note,
                                        evidence=evidence, now=self.ks.now())
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        status = next(t["status"] for t in inc["tasks"] if t["position"] == position)
        self.app.call_from_thread(self._updated, inc, position, status)

    def _updated(self, inc: dict[str, Any], position: int, status: str) -> None:
        self.app.notify(f"{self.incident_id} task {position}: {status}")  # even if closed since
        self._show(inc)

    # --- the automated tasks ------------------------------------------------------------------

    def action_run_auto(self) -> None:
        inc = self.incident
        if inc is None:
            return
        busy = self.ks.busy_with()
        if busy:
            self.notify(f"{busy} is running; run the incident's tasks when it has finished")
            return
        waiting = open_automated(inc)
        if not waiting:
            self.notify(f"{self.incident_id} has no automated task open")
            return
        lines = [f"Run the {len(waiting)} automated task(s) of {self.incident_id} now?", ""]
        lines += [f"  {t['position']}. {t['step']} ({t['csf']}): {cut(t['title'], 60)}"
                  for t in waiting]
        lines += ["", "They act on the real issuers (revoke, deactivate, rotate)."]

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_events = []
                self.run_state = "running the automated tasks …"
                self._draw_status()
                self.ks.run_uninterruptible("rotate-run", self._run_auto)

        self.app.push_screen(ConfirmPrompt("\n".join(lines)), answered)

    def _run_auto(self) -> None:
        app: Any = self.app
        from console.incidents.runner import run_incident

        try:
            # the app's engine for the app's store; a drill's store gets the runner's own
            engine = app.engine() if self._store is None else None
            summary = run_incident(self.store, self.audit, self.loaded, self.incident_id,
                                   actor=app.actor, engine=engine, on_event=self._on_event)
        except Exception as exc:
            self.fail_from_thread(exc)
            app.call_from_thread(self._ran, None, None)
            return
        app.call_from_thread(self._ran, summary, None)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.app.call_from_thread(self._event, event)

    def _event(self, event: dict[str, Any]) -> None:
        """console.incidents.runner's events: task-start, progress (one credential or one
        hunt finding), task-done. The table follows from the store; this is the line below."""
        if not self.alive:
            return
        kind = event.get("event")
        if kind == "task-start":
            self._running = f"task {event.get('position')} ({event.get('step')})"
            self.run_state = f"running {self._running} …"
        elif kind == "progress":
            what = event.get("credential") or event.get("finding") or ""
            self.run_state = f"running {self._running}: {what} {event.get('status') or ''}"
        elif kind == "task-done":
            self.run_state = (f"task {event.get('position')} ({event.get('step')}): "
                              f"{event.get('status')}")
        if self.run_state:
            self.run_events = [*self.run_events[-199:], self.run_state]
        self._draw_status()
        self.reload()

    def _ran(self, summary: dict[str, Any] | None, error: str | None) -> None:
        self.run_state = None
        if error:
            self.app.notify(error, severity="warning")
        elif summary is not None:
            tasks = summary.get("tasks", [])
            counts: dict[str, int] = {}
            for t in tasks:
                counts[t.get("status", "?")] = counts.get(t.get("status", "?"), 0) + 1
            said = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing run"
            ok = summary.get("ok", False)
            self.app.notify(f"{self.incident_id}: automated tasks {said}",
                            severity="information" if ok else "warning", timeout=10)
        if self.alive:
            self._draw_status()
            self.reload()

    # --- close and export -------------------------------------------------------------------

    def action_close_incident(self) -> None:
        inc = self.incident
        if inc is None or inc["status"] != "open":
            return
        still = [t["position"] for t in inc["tasks"] if t["status"] in ("todo", "doing")]

        def noted(answer: tuple[str | None, list[str]] | None) -> None:
            if answer is None:
                return
            if not still:
                self._close(answer[0], force=False)
                return
            question = (f"{len(still)} task(s) still open ({', '.join(map(str, still))}): "
                        "close anyway and record them skipped?")
            self.app.push_screen(ConfirmPrompt(question),
                                 lambda yes: self._close(answer[0], force=True) if yes else None)

        self.app.push_screen(TaskPrompt(self.incident_id, None, "close"), noted)

    def _close(self, note: str | None, *, force: bool) -> None:
        def work_() -> None:
            from console import incidents

            try:
                inc = incidents.close_incident(self.store, self.audit, self.incident_id,
                                               actor=self.ks.actor, note=note, force=force,
                                               now=self.ks.now())
            except Exception as exc:
                self.fail_from_thread(exc)
                return
            self.app.call_from_thread(self._closed, inc)

        self.ks.run_uninterruptible("incident-task", work_)

    def _closed(self, inc: dict[str, Any]) -> None:
        self.app.notify(f"{self.incident_id} closed")
        self._show(inc)

    def action_export(self) -> None:
        export_incident(self, self.incident_id, self.store, self.audit)


_SPLIT = re.compile(r"[\s,]+")


class TaskPrompt(ModalScreen[tuple[str | None, list[str]] | None]):
    """A note and evidence references for a task (or a note for closing). Dismisses with
    (note or None, [refs]); None when cancelled. The references are checked by
    console.incidents when the change is made, and a bad one comes back as one line."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="incident-task.cancel"),
    ]
    DEFAULT_CSS = """
    TaskPrompt { align: center middle; }
    TaskPrompt Input { margin-top: 1; }
    """

    def __init__(self, incident_id: str, task: dict[str, Any] | None, action: str) -> None:
        super().__init__(id="incident-task-prompt")
        self.incident_id, self.item, self.action = incident_id, task, action

    def compose(self) -> ComposeResult:
        if self.item is None:
            title = f"Close {self.incident_id}"
        else:
            title = (f"{TASK_VERBS.get(self.action, self.action)} task {self.item['position']} "
                     f"of {self.incident_id}")
        with Vertical(id="prompt-dialog"):
            yield Static(Text(title, style="bold"), id="prompt-label")
            if self.item is not None:
                yield Static(Text(self.item["title"], style="dim"), id="task-title")
            placeholder = ("why it is closed (optional)" if self.item is None
                           else "note: what was done (optional; replaces the task's note)")
            yield Input(id="task-note", placeholder=placeholder)
            if self.item is not None:
                yield Input(id="task-evidence",
                            placeholder="evidence (optional): audit:SEQ run:ID finding:ID "
                                        "usage:ID")
            with Horizontal(id="prompt-buttons"):
                yield Button("OK (enter)", id="task-ok", variant="primary")
                yield Button("Cancel (esc)", id="task-cancel")

    def on_mount(self) -> None:
        self.query_one("#task-note", Input).focus()

    @on(Input.Submitted, "#task-note")
    def _next(self) -> None:
        if self.item is None:
            self._submit()
        else:
            self.query_one("#task-evidence", Input).focus()

    @on(Input.Submitted, "#task-evidence")
    @on(Button.Pressed, "#task-ok")
    def _submit(self) -> None:
        note = self.query_one("#task-note", Input).value.strip() or None
        refs: list[str] = []
        if self.item is not None:
            text = self.query_one("#task-evidence", Input).value
            refs = [r for r in _SPLIT.split(text.strip()) if r]
        self.dismiss((note, refs))

    @on(Button.Pressed, "#task-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

