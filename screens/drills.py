"""`:drills` (`:dr`): the drill scenarios with their last score and rating, and the history of
runs; one run's scores, ratings and failed checks (console/drills/ does the work; this only
asks and shows).

- The scenarios (built-ins, then the user's YAML in `<config dir>/drills`; a bad file is named
  in the status line and the built-ins still listed) with the last scored run's score and its
  weakest rating; under them every run, newest first: status, score, TTC / TTR, failed checks.
  `tab` moves between the two tables; `/` filters the scenarios.
- `r` runs the scenario under the cursor `--auto` (after a confirmation: it builds a world in
  the sandbox) in a thread the app owns; the drill's events are the status line and the runs
  table follows the store. `i` sets the scenario up without --auto and opens its incident in
  the incident view over the drill's own store, where the responder works it; `v` on that run
  then verifies, scores and cleans up. enter on a run opens its scores; `e` writes its
  after-action report (Markdown) into the data dir.
- Read-only: running, setting up and verifying are stripped; reading and reports stay.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Static

from console.errors import KeyshiftError
from console.paths import write_private
from screens.base import KeyshiftScreen
from screens.incidents import IncidentScreen, long_time
from screens.listview import ListScreen, Row, _size_columns, styled
from screens.prompts import ConfirmPrompt
from screens.theme import state_style
from screens.widgets.filter_input import FilterInput
from screens.widgets.header import HeaderBar

if TYPE_CHECKING:
    from textual.app import App

RUN_LIMIT = 200
LIVE_EVERY = 1.0
READ_ONLY_NOTE = "read-only: running and verifying drills are off; reports stay"

# a run's status -> the meaning it is painted with (screens/theme.py)
MEANING = {
    "running": "running",
    "awaiting-response": "waiting",
    "passed": "ok",
    "failed": "failed",
    "error": "failed",
    "interrupted": "warning",
}
# a rating's level (console.drills.scoring.LEVELS) -> meaning
LEVEL_MEANING = {3: "ok", 2: "warning", 1: "failed", 0: "failed"}
LIVE_STATUSES = ("running", "awaiting-response")


def run_style(app: App, status: str) -> Any:
    return state_style(app, MEANING.get(status, ""))


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def weakest(scores: dict[str, Any] | None) -> dict[str, Any] | None:
    """The lowest-rated capability of a scored run: what its rating column says."""
    # a "not exercised" capability has no level: it is neither weak nor strong
    ratings = {c: r for c, r in ((scores or {}).get("ratings") or {}).items()
               if r.get("level") is not None}
    if not ratings:
        return None
    cap, rating = min(ratings.items(), key=lambda item: item[1]["level"])
    return {"capability": cap, **rating}


def failed_checks(detail: dict[str, Any]) -> list[str]:
    return [f"{c['check']}({c.get('target')})" for c in detail.get("checks", []) if not c["ok"]]


def read_scenarios() -> tuple[dict[str, Any], str | None]:
    """Every scenario; with a bad user file, the built-ins and that file's error (one line)."""
    from console.drills.loader import all_scenarios, builtin_scenarios, user_dir

    try:
        return all_scenarios(), None
    except KeyshiftError as exc:
        # the file by its name in the drills folder: a status line has one line
        return builtin_scenarios(), exc.one_line().replace(f"{user_dir()}/", "drills/")


def report_path(run_id: str) -> Path:
    from console.paths import data_dir, private_dir

    return private_dir(data_dir() / "exports") / f"{run_id}.md"


def export_report(screen: KeyshiftScreen, run_id: str) -> None:
    """The after-action report, Markdown, into the data dir (in a thread)."""

    def work_() -> None:
        from console.drills import report

        try:
            row = screen.ks.store.get_drill_run(run_id)
            if row is None:
                raise KeyError(run_id)
            path = report_path(run_id)
            write_private(path, report.markdown(report.build(screen.ks.store, row)))
        except Exception as exc:
            screen.fail_from_thread(exc)
            return
        screen.app.call_from_thread(screen.app.notify, f"{run_id} report written to {path}",
                                    timeout=10)

    screen.app.run_worker(work_, thread=True, group="drill-export", exit_on_error=False)


class DrillActions:
    """Running, setting up, verifying and opening a drill's incident: shared by the list and
    a run's screen. The screen provides ``reload()`` and ``drill_note(text)``."""

    MUTATING: ClassVar[tuple[str, ...]] = ("run_auto", "run_interactive", "verify")

    def _busy(self) -> bool:
        busy = self.ks.busy_with()  # type: ignore[attr-defined]
        if busy:
            self.notify(f"{busy} is running; start the drill when it has finished")  # type: ignore[attr-defined]
        return bool(busy)

    def start_drill(self, name: str, *, auto: bool) -> None:
        if self._busy():
            return
        how = ("run it --auto: the automated responder works the incident, the outcome is "
               "checked against the servers and scored" if auto else
               "set it up and open its incident here for you to work; v verifies it after")

        def answered(yes: bool | None) -> None:
            if yes:
                self.drill_note(f"drill {name}: starting …")  # type: ignore[attr-defined]
                self.ks.run_uninterruptible(  # type: ignore[attr-defined]
                    "rotate-run", lambda: self._run(name, auto))

        self.app.push_screen(ConfirmPrompt(  # type: ignore[attr-defined]
            f"Drill {name}: build its world in the keyshift sandbox, inject the fault, and "
            f"{how}?"), answered)

    def _run(self, name: str, auto: bool) -> None:
        from console import drills

        app: Any = self.app  # type: ignore[attr-defined]
        try:
            row = drills.run_drill(app.store, app.audit, drills.get_scenario(name),
                                   actor=app.actor, auto=auto, on_event=self._on_event)
        except Exception as exc:
            self.fail_from_thread(exc)  # type: ignore[attr-defined]
            app.call_from_thread(self._ran, None)
            return
        app.call_from_thread(self._ran, row)
        if not auto and row.get("status") == "awaiting-response":
            self._open_incident_worker(row)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.app.call_from_thread(self._event, event)  # type: ignore[attr-defined]

    def _event(self, event: dict[str, Any]) -> None:
        words = [str(v) for k, v in event.items() if k != "event" and v is not None
                 and k in ("run", "step", "status", "incident", "score", "tag")]
        self.drill_note(f"drill {event.get('event')}: {' '.join(words)}")  # type: ignore[attr-defined]
        if getattr(self, "alive", False):
            self.reload()  # type: ignore[attr-defined]

    def _ran(self, row: dict[str, Any] | None) -> None:
        app: Any = self.app  # type: ignore[attr-defined]
        if row:
            score = "" if row.get("score") is None else f", score {row['score']:g}"
            bad = row["status"] in ("failed", "error")
            app.notify(f"drill {row['id']} ({row['scenario']}): {row['status']}{score}",
                       severity="warning" if bad else "information", timeout=10)
        self.drill_note("")  # type: ignore[attr-defined]
        if getattr(self, "alive", False):
            self.reload()  # type: ignore[attr-defined]

    def verify_run(self, row: dict[str, Any] | None) -> None:
        if row is None:
            return
        if row["status"] != "awaiting-response":
            self.notify(f"drill {row['id']} is {row['status']}: only a run set up without "  # type: ignore[attr-defined]
                        "--auto waits to be verified")
            return
        if self._busy():
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.drill_note(f"drill {row['id']}: verifying …")  # type: ignore[attr-defined]
                self.ks.run_uninterruptible("rotate-run", lambda: self._verify(row))  # type: ignore[attr-defined]

        self.app.push_screen(ConfirmPrompt(  # type: ignore[attr-defined]
            f"Verify drill {row['id']} ({row['scenario']}) against the servers, score it and "
            "remove its world?"), answered)

    def _verify(self, row: dict[str, Any]) -> None:
        from console import drills

        app: Any = self.app  # type: ignore[attr-defined]
        try:
            done = drills.verify_drill(app.store, app.audit, drills.get_scenario(row["scenario"]),
                                       row["id"], actor=app.actor, on_event=self._on_event)
        except Exception as exc:
            self.fail_from_thread(exc)  # type: ignore[attr-defined]
            app.call_from_thread(self._ran, None)
            return
        app.call_from_thread(self._ran, done)

    def open_incident(self, row: dict[str, Any] | None) -> None:
        if row is None:
            return
        if not row["detail"].get("incident") or not row["detail"].get("drill_db"):
            self.notify(f"drill {row['id']} opened no incident")  # type: ignore[attr-defined]
            return
        self.app.run_worker(lambda: self._open_incident_worker(row), thread=True,  # type: ignore[attr-defined]
                            group="drill-open", exit_on_error=False)

    def _open_incident_worker(self, row: dict[str, Any]) -> None:
        """The drill's store (and its inventory, while its world exists) opened off the UI
        thread, then its incident shown over them."""
        from console.audit import AuditLog
        from console.config import load_inventory
        from console.store import Store

        app: Any = self.app  # type: ignore[attr-defined]
        detail = row["detail"]
        db = Path(detail["drill_db"])
        try:
            if not db.is_file():
                raise FileNotFoundError(f"the drill's store {db} is gone")
            store = Store(db)
            inventory = db.parent / "inventory.yaml"
            loaded = load_inventory(inventory) if inventory.is_file() else None
        except Exception as exc:
            self.fail_from_thread(exc)  # type: ignore[attr-defined]
            return
        screen = IncidentScreen(detail["incident"], store=store, audit=AuditLog(store),
                                loaded=loaded, where=f"drill {row['id']}", owns_store=True)
        app.call_from_thread(app.push_screen, screen)


# --- the list ---------------------------------------------------------------------------------


class DrillsScreen(DrillActions, ListScreen):
    view_name = "drills"
    NOUN = "scenarios"
    NOUN_ONE = "scenario"
    REFRESH_EVERY = 2.0  # runs started from the CLI or the schedule show up
    COLUMNS: ClassVar[list[tuple[str, str]]] = [
        ("name", "SCENARIO"),
        ("origin", "FROM"),
        ("last_score", "LAST SCORE"),
        ("rating", "WEAKEST RATING"),
        ("last_at", "LAST RUN"),
        ("runs", "RUNS"),
        ("title", "TITLE"),  # the long one last
    ]
    RUN_COLUMNS = (("id", "RUN"), ("scenario", "SCENARIO"), ("status", "STATUS"),
                   ("score", "SCORE"), ("ttc", "TTC"), ("ttr", "TTR"),
                   ("started", "STARTED (UTC)"), ("mode", "MODE"), ("what", "FAILED / ERROR"))
    FIELDS = ("name", "origin", "title", "description", "status")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run_auto", "Run --auto", id="drills.run"),
        Binding("i", "run_interactive", "Run with me", id="drills.run-interactive"),
        Binding("v", "verify", "Verify", id="drills.verify"),
        Binding("o", "open_incident", "Incident", id="drills.incident"),
        Binding("e", "export", "Report", id="drills.report"),
    ]

    def __init__(self, filter_text: str = "") -> None:
        super().__init__(filter_text)
        self.runs: list[dict[str, Any]] = []
        self.load_error: str | None = None
        self.note = ""

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        yield FilterInput(placeholder=self.FILTER_PLACEHOLDER, id="filter")
        yield DataTable(id="list", cursor_type="row", zebra_stripes=True)
        yield Static(Text(" runs, newest first (enter opens one)", style="bold dim"),
                     id="runs-title")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static(id="status")

    DEFAULT_CSS = """
    DrillsScreen #list { height: auto; max-height: 14; }
    DrillsScreen #runs-title { height: 1; }
    DrillsScreen #runs { height: 1fr; }
    """

    def on_mount(self) -> None:
        runs = self.query_one("#runs", DataTable)
        for key, label in self.RUN_COLUMNS:
            runs.add_column(label, key=key)
        # ListScreen's on_mount runs after this one (Textual calls each class's handler)

    def read_rows(self) -> list[Row]:
        scenarios, error = read_scenarios()
        store = self.ks.store
        last = store.last_drill_scores()
        runs = store.drill_runs(limit=RUN_LIMIT)
        by_id = {r["id"]: r for r in runs}
        counts: dict[str, int] = {}
        for r in runs:
            counts[r["scenario"]] = counts.get(r["scenario"], 0) + 1
        rows = []
        for name, sc in scenarios.items():
            got = last.get(name)
            full = by_id.get(got["id"]) if got else None
            if got and full is None:
                full = store.get_drill_run(got["id"])
            low = weakest((full or {}).get("detail", {}).get("scores")) if full else None
            rows.append({
                "name": name, "origin": "built-in" if sc.source == "built-in" else "yours",
                "title": sc.title, "description": sc.description,
                "last_score": got["score"] if got else None,
                "status": got["status"] if got else "never run",
                "last_at": got["started_at"] if got else None,
                "rating": low, "runs": counts.get(name, 0),
            })
        self.runs, self.load_error = runs, error  # read by _loaded on the UI thread
        return rows

    def cells(self, row: Row) -> list[Text | str]:
        app = self.app
        if row["last_score"] is None:
            score = styled("-", app, "muted")
        else:
            score = Text(f"{row['last_score']:g} ({row['status']})",
                         style=run_style(app, row["status"]))
        low = row["rating"]
        rating = (Text(f"{low['capability']}: {low['rating']}",
                       style=state_style(app, LEVEL_MEANING.get(low["level"], "")))
                  if low else styled("-", app, "muted"))
        return [
            Text(row["name"], style="bold"),
            styled(row["origin"], app, "muted" if row["origin"] == "built-in" else "accent"),
            score,
            rating,
            long_time(row["last_at"])[:16] if row["last_at"] else "-",
            str(row["runs"]),
            row["title"],
        ]

    def key_of(self, row: Row) -> str:
        return str(row["name"])

    def _loaded(self, rows: list[Row], asked: str) -> None:
        super()._loaded(rows, asked)
        if self.alive:
            self._fill_runs()

    def _run_cells(self, run: dict[str, Any]) -> list[Text | str]:
        app = self.app
        d = run["detail"]
        times = (d.get("scores") or {}).get("times") or {}
        what = d.get("error") or ", ".join(failed_checks(d))
        if run["status"] == "awaiting-response":
            what = f"incident {d.get('incident')} waits for you: o opens it, v verifies"
        return [
            Text(run["id"], style="bold"),
            run["scenario"],
            Text(run["status"], style=run_style(app, run["status"])),
            "-" if run["score"] is None else f"{run['score']:g}",
            seconds(times.get("ttc")),
            seconds(times.get("ttr")),
            long_time(run["started_at"])[:19],
            "--auto" if d.get("auto") else "person",
            Text(what or "-", style=state_style(app, "error") if d.get("error") else "dim"),
        ]

    def _fill_runs(self) -> None:
        table = self.query_one("#runs", DataTable)
        key = self._current_run_key()
        rows = [self._run_cells(r) for r in self.runs]
        _size_columns(table, rows)
        table.clear()
        for run, cells in zip(self.runs, rows, strict=True):
            table.add_row(*cells, key=run["id"])
        for index, run in enumerate(self.runs):
            if run["id"] == key:
                table.move_cursor(row=index, animate=False)
                break
        self._status()

    def _current_run_key(self) -> str | None:
        run = self.current_run()
        return run["id"] if run else None

    def current_run(self) -> dict[str, Any] | None:
        table = self.query_one("#runs", DataTable)
        if not self.runs or not 0 <= table.cursor_row < len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def drill_note(self, text: str) -> None:
        self.note = text
        if self.alive:
            self._status()

    def status_extra(self) -> Text | None:
        text = Text()
        if self.note:
            text.append(self.note, style=state_style(self.app, "running"))
        if getattr(self.app, "read_only", False):
            if text:
                text.append("   ")
            text.append(READ_ONLY_NOTE, style=state_style(self.app, "warning"))
        if self.load_error:  # last: a path can be long
            if text:
                text.append("   ")
            text.append(f"your scenarios: {self.load_error}", style=state_style(self.app,
                                                                               "error"))
        return text or None

    # --- keys -----------------------------------------------------------------------------

    def action_run_auto(self) -> None:
        row = self.current
        if row is not None:
            self.start_drill(row["name"], auto=True)

    def action_run_interactive(self) -> None:
        row = self.current
        if row is not None:
            self.start_drill(row["name"], auto=False)

    def action_verify(self) -> None:
        self.verify_run(self.current_run())

    def action_open_incident(self) -> None:
        self.open_incident(self.current_run())

    def action_export(self) -> None:
        run = self.current_run()
        if run is not None:
            export_report(self, run["id"])

    def open_row(self, row: Row) -> None:
        """enter on a scenario: its runs first in the table below."""
        table = self.query_one("#runs", DataTable)
        for index, run in enumerate(self.runs):
            if run["scenario"] == row["name"]:
                table.move_cursor(row=index, animate=False)
                table.focus()
                return
        self.notify(f"{row['name']} has never run: r runs it --auto, i with you")

    @on(DataTable.RowSelected, "#runs")
    def _run_selected(self) -> None:
        run = self.current_run()
        if run is not None:
            self.app.push_screen(DrillRunScreen(run["id"]))


# --- one run ----------------------------------------------------------------------------------


class DrillRunScreen(DrillActions, KeyshiftScreen):
    """One drill run: its scores, ratings per capability, failed checks and improvement plan;
    live while it runs or waits for its responder."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open_incident", "Incident", id="drill-run.incident"),
        Binding("v", "verify", "Verify", id="drill-run.verify"),
        Binding("e", "export", "Report", id="drill-run.report"),
    ]
    MUTATING: ClassVar[tuple[str, ...]] = ("verify",)
    DEFAULT_CSS = """
    DrillRunScreen #drill-body { padding: 0 1; }
    """

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: dict[str, Any] | None = None
        self.note = ""
        self._timer: Timer | None = None

    @property
    def crumb(self) -> str:
        return f"drill {self.run_id}"

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        with VerticalScroll(id="drill-body"):
            yield Static(Text("reading …", style="dim"), id="drill-meta", classes="section")
            yield Static(id="drill-ratings", classes="section")
            yield Static(id="drill-checks", classes="section")
            yield Static(id="drill-plan")
        yield Static(id="status")

    def on_mount(self) -> None:
        self.reload()
        self._timer = self.set_interval(LIVE_EVERY, self.reload)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
        self.reload()

    def reload(self) -> None:
        self._read()

    def drill_note(self, text: str) -> None:
        self.note = text
        if self.alive:
            self.query_one("#status", Static).update(
                Text(text, style=state_style(self.app, "running")), layout=False)

    @work(thread=True, exclusive=True, group="drill-read")
    def _read(self) -> None:
        try:
            run = self.ks.store.get_drill_run(self.run_id)
        except Exception as exc:
            self.fail_from_thread(exc)
            return
        self.app.call_from_thread(self._show, run)

    def _show(self, run: dict[str, Any] | None) -> None:
        if not self.alive or run == self.run:
            return
        self.run = run
        meta = self.query_one("#drill-meta", Static)
        if run is None:
            meta.update(f"no drill run {self.run_id}")
            return
        app = self.app
        d = run["detail"]
        s = d.get("scores") or {}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        score = "-" if run["score"] is None else f"{run['score']:g} / 100"
        rows: list[tuple[str, Any]] = [
            ("run", f"{run['id']}  {run['scenario']}: {d.get('title') or ''}"),
            ("status", Text(run["status"], style=run_style(app, run["status"]))),
            ("score", score),
            ("run by", f"{run['actor']} ({'--auto' if d.get('auto') else 'a person'})"
             + (f", skipping {', '.join(d['skip'])}" if d.get("skip") else "")),
            ("started", long_time(run["started_at"])),
            ("finished", long_time(run["finished_at"])),
            ("incident", f"{d.get('incident') or '-'} in {d.get('drill_db') or '-'}"),
        ]
        if d.get("error"):
            rows.append(("error", Text(d["error"], style=state_style(app, "error"))))
        if s:
            t = s.get("times") or {}
            rows.append(("times", f"detect {seconds(t.get('ttd'))} · contain "
                         f"{seconds(t.get('ttc'))} · eradicate {seconds(t.get('ttr'))} · "
                         f"verify {seconds(t.get('ttv'))} (from injection)"))
            c = s.get("checklist") or {}
            rows.append(("checklist", f"{c.get('done')}/{c.get('total')} done, "
                         f"{c.get('skipped')} skipped"))
            k = s.get("checks") or {}
            rows.append(("checks", f"{k.get('passed')}/{k.get('total')} passed"))
            rows.append(("still valid", ", ".join(s.get("still_valid") or []) or "none"))
            rows.append(("consumers broken", ", ".join(s.get("consumers_broken") or [])
                         or "none"))
            e = s.get("evidence") or {}
            rows.append(("evidence", f"{e.get('with_evidence')}/{e.get('expected')} acted-on "
                         "tasks done with evidence"))
        if run["status"] == "awaiting-response":
            rows.append(("", Text("the incident waits for you: o opens it; v verifies once "
                                  "worked", style=state_style(app, "waiting"))))
        for label, value in rows:
            grid.add_row(label, value)
        meta.update(grid)
        ratings = Table(title="ratings", title_justify="left", box=None,
                        header_style="bold dim", title_style="bold")
        for label in ("CAPABILITY", "RATING", "WHY"):
            ratings.add_column(label, no_wrap=label != "WHY")
        for cap, r in (s.get("ratings") or {}).items():
            ratings.add_row(cap, Text(r["rating"], style=state_style(
                app, LEVEL_MEANING.get(r["level"], ""))), r.get("why") or "")
        self.query_one("#drill-ratings", Static).update(ratings if s else "")
        checks = Table(title="checks", title_justify="left", box=None,
                       header_style="bold dim", title_style="bold")
        for label in ("CHECK", "TARGET", "RESULT", "WHY"):
            checks.add_column(label, no_wrap=label != "WHY")
        for c in sorted(d.get("checks", []), key=lambda c: c["ok"]):  # failed first
            checks.add_row(c["check"], str(c.get("target")),
                           Text("passed" if c["ok"] else "FAILED",
                                style=state_style(app, "ok" if c["ok"] else "failed")),
                           c.get("why") or "")
        self.query_one("#drill-checks", Static).update(checks if d.get("checks") else "")
        plan = Text()
        if d.get("plan"):
            plan.append("improvement plan\n", style="bold")
            for item in d["plan"]:
                plan.append(f"- {item}\n")
        self.query_one("#drill-plan", Static).update(plan)
        if run["status"] not in LIVE_STATUSES and self._timer is not None:
            self._timer.pause()  # nothing more will change by itself
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if allowed and action == "verify" and (self.run or {}).get("status") \
                != "awaiting-response":
            return None
        return allowed

    def action_open_incident(self) -> None:
        self.open_incident(self.run)

    def action_verify(self) -> None:
        self.verify_run(self.run)

    def action_export(self) -> None:
        export_report(self, self.run_id)
