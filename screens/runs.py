"""`:runs`: every rotation run, newest first, live while any runs; enter shows one run's steps
(live too). From either: resume an interrupted run, roll back one that stopped before
promote, finish the runs whose grace period is over (or one run now), each after a
confirmation. The engine does the work in a thread worker; the screens re-read the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Static

from console.model import ACTIVE_RUN_STATUSES, RunStatus
from screens.base import KeyshiftScreen
from screens.format import ago, aware, when
from screens.listview import ListScreen, Row, styled
from screens.prompts import ConfirmPrompt, TuiInteraction
from screens.theme import status_style
from screens.widgets.header import HeaderBar

RUN_LIMIT = 2000
LIVE_EVERY = 1.0

RUN_ACTIONS: list[BindingType] = [
    Binding("u", "resume", "Resume", id="runs.resume"),
    Binding("b", "roll_back", "Roll back", id="runs.rollback"),
    Binding("f", "finish_due", "Finish due", id="runs.finish-due"),
    Binding("F", "finish_now", "Finish now", show=False, id="runs.finish-now"),
]


class RunActions:
    """Resume, roll back and finish, shared by the runs list and a run's screen. The screen
    provides ``selected_run()`` and ``reload()``."""

    MUTATING: ClassVar[tuple[str, ...]] = ("resume", "roll_back", "finish_due", "finish_now")

    def selected_run(self) -> dict | None:
        raise NotImplementedError

    def _start(self, what: str, run_id: str | None) -> None:
        app: Any = self.app  # type: ignore[attr-defined]
        app.run_uninterruptible("rotate-run", lambda: self._engine_call(what, run_id))

    def _ask(self, question: str, then: Any) -> None:
        busy = self.app.busy_with()  # type: ignore[attr-defined]
        if busy:
            # one run driven by two threads of this process would race itself
            self.notify(f"{busy} is running; try again when it has finished")  # type: ignore[attr-defined]
            return

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmPrompt(question), answered)  # type: ignore[attr-defined]

    def action_resume(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if run["status"] not in (RunStatus.running.value, RunStatus.rollback_failed.value):
            self.notify(f"run {run['id'][:12]} is {run['status']}: nothing to resume")  # type: ignore[attr-defined]
            return
        self._ask(
            f"Resume run {run['id'][:12]} of {run['credential_id']} from its first unfinished "
            "step?",
            lambda: self._start("resume", run["id"]),
        )

    def action_roll_back(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if run["status"] not in (RunStatus.running.value, RunStatus.rollback_failed.value):
            self.notify(  # type: ignore[attr-defined]
                f"run {run['id'][:12]} is {run['status']}: only a run stopped before promote "
                "rolls back",
                severity="warning",
            )
            return
        self._ask(
            f"Roll back run {run['id'][:12]}: discard its new value and put the old value of "
            f"{run['credential_id']} back?",
            lambda: self._start("roll_back", run["id"]),
        )

    def action_finish_due(self) -> None:
        self._ask(
            "Revoke the old values of every run whose grace period is over?",
            lambda: self._start("finish_due", None),
        )

    def action_finish_now(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if run["status"] != RunStatus.awaiting_revoke.value:
            self.notify(f"run {run['id'][:12]} is {run['status']}, not awaiting revoke")  # type: ignore[attr-defined]
            return
        self._ask(
            f"Revoke the old value of {run['credential_id']} NOW, before its grace period "
            "ends? Consumers still using it will fail.",
            lambda: self._start("finish_now", run["id"]),
        )

    def _engine_call(self, what: str, run_id: str | None) -> None:
        app: Any = self.app  # type: ignore[attr-defined]
        person = TuiInteraction(app, lambda text: app.notify(text, timeout=10))
        try:
            engine = app.engine()
            actor = app.actor
            if what == "resume":
                results = [engine.resume(run_id, actor=actor, interaction=person)]
            elif what == "roll_back":
                results = [engine.roll_back(run_id, actor=actor, interaction=person)]
            elif what == "finish_now":
                results = [
                    engine.finish_run(run_id, actor=actor, now_regardless=True, interaction=person)
                ]
            else:
                results = engine.finish_due(actor=actor, interaction=person)
        except Exception as exc:
            self.fail_from_thread(exc)  # type: ignore[attr-defined]
            app.call_from_thread(self._engine_done, what, None)
            return
        app.call_from_thread(self._engine_done, what, results)

    def _engine_done(self, what: str, results: list[Any] | None) -> None:
        """``results`` None: the call failed (fail() said why)."""
        app: Any = self.app  # type: ignore[attr-defined]
        if results == [] and what == "finish_due":
            app.notify("no run was due")
        for result in results or []:
            severity = "error" if result.error else "information"
            text = f"run {result.run_id[:12]}: {result.status}"
            if result.error:
                text += f" ({result.error})"
            app.notify(text, severity=severity, timeout=8)
        if self.alive:  # type: ignore[attr-defined]
            self.reload()  # type: ignore[attr-defined]


def _age(value: Any, now: datetime) -> str:
    return ago(value, now, none="-") if value else "-"


class RunsScreen(RunActions, ListScreen):
    view_name = "runs"
    NOUN = "runs"
    NOUN_ONE = "run"
    REFRESH_EVERY = LIVE_EVERY
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("short", "RUN"),
        ("name", "CREDENTIAL"),
        ("status", "STATUS"),
        ("step", "STEP"),
        ("started", "STARTED"),
        ("actor", "ACTOR"),
        ("next", "NEXT / ERROR"),
    ]
    FIELDS = ("id", "name", "credential", "status", "step", "actor", "rotator", "error")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Steps", id="runs.open"),
        *RUN_ACTIONS,
    ]

    def read_rows(self) -> list[Row]:
        store = self.ks.store
        runs = store.rotation_runs(limit=RUN_LIMIT)
        labels = store.credential_labels([r["credential_id"] for r in runs])
        steps = store.last_steps([r["id"] for r in runs])
        rows = []
        for run in runs:
            last = steps.get(run["id"]) or {}
            rows.append(
                {
                    **run,
                    "short": run["id"][:12],
                    "name": (labels.get(run["credential_id"]) or {}).get("name")
                    or run["credential_id"],
                    "credential": run["credential_id"],
                    "step": f"{last.get('step', '-')} {last.get('status', '')}".strip(),
                }
            )
        return rows

    def cells(self, row: Row) -> list[Text | str]:
        now = self.ks.now()
        status = row["status"]
        if row.get("error"):
            nxt = styled(str(row["error"]), self.app, "error")
        elif status == RunStatus.awaiting_revoke.value and row.get("revoke_after"):
            due = aware(row["revoke_after"])
            nxt = Text(f"revoke {'due' if due <= now else ago(due, now)}")
        else:
            nxt = Text("-")
        return [
            Text(row["short"], style="dim"),
            Text(row["name"], style="bold"),
            Text(status, style=status_style(self.app, status)),
            row["step"],
            _age(row.get("started_at") or row.get("created_at"), now),
            row.get("actor") or "-",
            nxt,
        ]

    def key_of(self, row: Row) -> str:
        return str(row["id"])

    def status_extra(self) -> Text | None:
        active = sum(1 for r in self.rows if r["status"] in ACTIVE_RUN_STATUSES)
        return Text(f"{active} active (live)", style="dim") if active else None

    def selected_run(self) -> dict | None:
        return self.current

    def action_open(self) -> None:
        row = self.current
        if row is not None:
            self.open_row(row)

    def open_row(self, row: Row) -> None:
        self.app.push_screen(RunScreen(row["id"]))


class RunScreen(RunActions, KeyshiftScreen):
    """One run: what it rotates, its state, and every step of its journal, live."""

    BINDINGS: ClassVar[list[BindingType]] = list(RUN_ACTIONS)

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: dict | None = None
        self._timer: Timer | None = None

    @property
    def crumb(self) -> str:
        return f"run {self.run_id[:12]}"

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        with VerticalScroll(id="run-body"):
            yield Static(Text("reading …", style="dim"), id="run-meta", classes="section")
            yield Static(id="run-steps")

    def on_mount(self) -> None:
        self.reload()
        self._timer = self.set_interval(LIVE_EVERY, self.reload)

    def selected_run(self) -> dict | None:
        return self.run

    def reload(self) -> None:
        if self._timer is not None:
            self._timer.resume()
        self._read()

    @work(thread=True, exclusive=True, group="run-read")
    def _read(self) -> None:
        store = self.ks.store
        try:
            run = store.get_rotation_run(self.run_id)
            steps = store.rotation_steps(self.run_id) if run else []
            labels = store.credential_labels([run["credential_id"]]) if run else {}
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._show, run, steps, labels)

    def _show(self, run: dict | None, steps: list[dict], labels: dict) -> None:
        if not self.alive:
            return
        self.run = run
        meta = self.query_one("#run-meta", Static)
        if run is None:
            meta.update(f"no run {self.run_id}")
            return
        now = self.ks.now()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        name = (labels.get(run["credential_id"]) or {}).get("name") or ""
        status = run["status"]
        rows: list[tuple[str, Any]] = [
            ("run", run["id"]),
            ("credential", f"{name}  {run['credential_id']}".strip()),
            ("status", Text(status, style=status_style(self.app, status))),
            ("rotator", run.get("rotator") or "-"),
            ("actor", run.get("actor") or "-"),
            ("started", when(run.get("started_at") or run.get("created_at"), now)),
            ("finished", when(run.get("finished_at"), now)),
        ]
        if run.get("revoke_after"):
            rows.append(("old value revoked", when(run["revoke_after"], now)))
        if run.get("owner_pid"):
            rows.append(("driven by", f"pid {run['owner_pid']} on {run.get('owner_host')}"))
        if run.get("error"):
            rows.append(("error", Text(str(run["error"]), style=status_style(self.app, "failed"))))
        for label, value in rows:
            grid.add_row(label, value)
        meta.update(grid)
        table = Table(box=None, header_style="bold dim", pad_edge=False, expand=False)
        for label in ("STEP", "STATUS", "TRIES", "STARTED", "FINISHED", "NOTE"):
            table.add_column(label, no_wrap=label != "NOTE")
        for step in steps:
            state = str(step.get("status"))
            note = step.get("error") or ""
            detail = step.get("detail")
            if not note and isinstance(detail, dict):
                note = str(detail.get("message") or "")
            table.add_row(
                str(step.get("step")),
                Text(state, style=status_style(self.app, state)),
                str(step.get("attempts") or 1),
                _age(step.get("started_at"), now),
                _age(step.get("finished_at"), now),
                note,
            )
        self.query_one("#run-steps", Static).update(table)
        if status not in ACTIVE_RUN_STATUSES and self._timer is not None:
            self._timer.pause()  # nothing more will change by itself
