"""Drills against the real sandbox: each built-in scenario runs --auto and passes its own
verification; the same scenario with its key response step skipped fails the check that step
exists for; the after-action report (md and json) holds no value; the drill store's anchor is
accepted by `keyshift audit verify --anchor`; a drill SIGKILLed mid-way is reported
interrupted and cleaned up; bad scenario YAML gives file:line:col. Scoring is unit-tested with
hand-made inputs.

Canaries: while a drill runs, the test reads every value its world holds (the agents' env
files, the KV secrets), before and after the response, and searches every output for them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console import drills
from console.audit import AuditLog
from console.drills import scoring
from console.drills.loader import loads_scenario
from console.errors import ConfigError, UsageError
from console.sandbox import SandboxState, vault_client
from console.store import Store

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")


class Main:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "main.db"
        self.store = Store(self.db)
        self.audit = AuditLog(self.store)
        self.canaries: set[str] = set()

    def watch(self, event: dict[str, Any]) -> None:
        """Read every value the world holds (as a spy would) whenever the drill reports."""
        if event["event"] not in ("incident", "task"):
            return
        (run_dir,) = [p for p in (Path(os.environ["KEYSHIFT_HOME"]) / "drills").iterdir()
                      if (p / "world.json").is_file() and p.name == self.current]
        self.read_values(run_dir)

    def read_values(self, run_dir: Path) -> None:
        """Every value the world in ``run_dir`` holds now: the agents' env files, its KV."""
        world = json.loads((run_dir / "world.json").read_text())
        for env in (run_dir / "workspace").rglob(".env"):
            for line in env.read_text().splitlines():
                name, _, value = line.partition("=")
                if value and name != "VAULT_ROLE_ID":
                    self.canaries.add(value.strip().strip("'\""))
        vault = vault_client()
        for rec in world["records"].values():
            if rec["part"] == "kv-generated":
                got = vault.secrets.kv.v2.read_secret_version(
                    rec["path"], mount_point=f"drill-{world['tag']}",
                    raise_on_deleted_version=True)
                self.canaries.add(got["data"]["data"]["value"])

    current = ""

    def run(self, name: str, **kwargs: Any) -> dict[str, Any]:
        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "start":
                self.current = event["run"]
            self.watch(event)

        return drills.run_drill(self.store, self.audit, drills.get_scenario(name),
                                actor="drill-test", on_event=on_event, **kwargs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KEYSHIFT, "--db", str(self.db), *args], env=dict(os.environ),
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)

    def start(self, name: str) -> tuple[str, list[str], dict[str, Any]]:
        """``keyshift drill run NAME`` without --auto, as a person starts one: returns the run
        id, the ``keyshift --inventory ... --db ...`` prefix to work its incident with, and
        what the run printed (json)."""
        got = self.cli("drill", "run", name, "--format", "json")
        assert got.returncode == 0, got.stderr
        info = json.loads(got.stdout.strip().splitlines()[-1])
        assert info["status"] == "awaiting-response", info
        self.read_values(Path(info["inventory"]).parent)
        return info["run"], [KEYSHIFT, "--inventory", info["inventory"], "--db",
                             info["drill_db"]], info

    def work(self, base: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        """One command of the person working the drill's incident (a process of its own)."""
        return subprocess.run([*base, *args], env=dict(os.environ), capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)

    def verify(self, run_id: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """``keyshift drill verify RUN`` in a later process; the run's row after it."""
        got = self.cli("drill", "verify", run_id, "--format", "json")
        return got, self.store.get_drill_run(run_id) or {}

    def no_canary(self, *texts: str) -> None:
        assert self.canaries, "the test read no values: it would prove nothing"
        for text in texts:
            for value in self.canaries:
                assert value not in text


@pytest.fixture
def main(sandbox: SandboxState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KEYSHIFT_HOME", str(home))
    m = Main(tmp_path)
    yield m
    m.store.close()


def checks_of(row: dict[str, Any]) -> dict[str, bool]:
    return {c["check"]: c["ok"] for c in row["detail"]["checks"]}


# --- scenarios, --auto ------------------------------------------------------------------------


def test_provider_key_leak_passes_and_a_skipped_revoke_leaves_the_key_valid(main: Main) -> None:
    row = main.run("provider-key-leaked")
    assert row["status"] == "passed", row["detail"]
    assert checks_of(row) == {"stolen-refused": True, "consumer-healthy": True,
                              "probe-failures": True, "rotated": True}
    probe = row["detail"]["probe"]
    assert probe["rounds"] > 0 and probe["failed"] == 0
    scores = row["detail"]["scores"]
    assert scores["passed"] and scores["still_valid"] == []
    assert scores["ratings"]["eradicate"]["level"] >= 2
    assert row["detail"]["cleanup"]["errors"] == []
    first_score = row["score"]

    # the person never revokes the old key: the attacker's copy still works
    bad = main.run("provider-key-leaked", skip=["revoke"])
    assert bad["status"] == "failed"
    assert checks_of(bad)["stolen-refused"] is False
    assert checks_of(bad)["consumer-healthy"] is True
    assert bad["detail"]["scores"]["still_valid"] == ["llm-key"]
    assert bad["score"] < first_score
    plan = "\n".join(bad["detail"]["plan"])
    assert "stolen-refused" in plan and "revoke" in plan

    # history in the main store, and the report's trend
    assert [r["id"] for r in main.store.drill_runs("provider-key-leaked")] == [bad["id"],
                                                                                row["id"]]
    actions = [e.action for e in main.audit.tail(10)]
    assert actions.count("drill.run") == 2
    md = main.cli("drill", "report", bad["id"], "--format", "md")
    js = main.cli("drill", "report", bad["id"], "--format", "json")
    assert md.returncode == 0 and js.returncode == 0, md.stderr + js.stderr
    data = json.loads(js.stdout)
    assert data["status"] == "failed" and data["trend"][-1]["run"] == bad["id"]
    assert [t["score"] for t in data["trend"]] == [first_score, bad["score"]]
    assert "## What went wrong" in md.stdout and "stolen-refused" in md.stdout
    # one UTC spelling throughout (the store says +00:00, the timeline Z)
    assert data["started_at"].endswith("Z") and data["finished_at"].endswith("Z")
    assert "+00:00" not in md.stdout and "+00:00" not in js.stdout
    assert f"in {bad['detail']['probe']['rounds']} round(s)" in md.stdout
    main.no_canary(md.stdout, js.stdout, json.dumps(row), json.dumps(bad),
                   main.db.read_bytes().decode("latin-1"))


def test_the_probe_runs_at_each_rotation_step_and_catches_a_revoke_before_delivery(
        main: Main) -> None:
    row = main.run("provider-key-leaked")
    probe = row["detail"]["probe"]
    # a round after each step of the rotation, the revoke among them
    assert {"issue", "verify", "revoke"} <= set(probe["after_steps"]), probe["after_steps"]
    assert any(s.startswith("deliver") for s in probe["after_steps"])
    assert probe["failed"] == 0 and checks_of(row)["probe-failures"] is True
    got = {c["check"]: c for c in row["detail"]["checks"]}["probe-failures"]
    assert f"{probe['rounds']} round(s)" in got["why"]

    # the same rotation, the person revoking the leaked key before keyshift delivers the new
    # one: the agent is refused for the few milliseconds in between, and the probe sees it
    folder = Path(os.environ["KEYSHIFT_HOME"]) / "drills"
    folder.mkdir(exist_ok=True)
    (folder / "hasty.yaml").write_text(
        "title: hasty revoke\nworld:\n  agents: [{name: support, owner: o}]\n"
        "  parts: [{part: provider-key, name: llm-key, agent: support}]\n"
        "inject: [{step: steal, credential: llm-key}]\n"
        "respond:\n  incident: {credential: llm-key}\n"
        "  steps: {eradicate: [{action: rotate, credential: llm-key, "
        "options: {order: revoke-first}}]}\n"
        "  probes: [llm-key]\n"
        "checks: [{check: stolen-refused, credential: llm-key}, "
        "{check: consumer-healthy, credential: llm-key}, {check: probe-failures}]\n")
    bad = drills.run_drill(main.store, main.audit, drills.get_scenario("hasty"),
                           actor="drill-test")
    got = checks_of(bad)
    assert got["stolen-refused"] is True and got["consumer-healthy"] is True
    assert got["probe-failures"] is False
    stats = bad["detail"]["probe"]
    assert stats["failed"] >= 1 and "issue" in stats["failed_after"], stats


def test_a_rotation_killed_half_way_is_resumed_and_skipping_it_is_caught(main: Main) -> None:
    row = main.run("rotation-failed-half-way")
    assert row["status"] == "passed", row["detail"]
    assert checks_of(row) == {"no-unfinished-runs": True, "consumer-healthy": True}
    bad = main.run("rotation-failed-half-way", skip=["eradicate"])
    assert bad["status"] == "failed"
    assert checks_of(bad) == {"no-unfinished-runs": False, "consumer-healthy": True}
    ratings = bad["detail"]["scores"]["ratings"]
    assert ratings["eradicate"]["rating"] == "unable to perform"
    # nothing contained anything in this drill: the --auto responder only confirmed the task
    assert ratings["contain"]["rating"] == "not exercised"
    assert "only confirmed" in ratings["contain"]["why"]


def test_a_departed_owner_is_replaced_and_her_copies_refused(main: Main) -> None:
    row = main.run("owner-departs")
    assert row["status"] == "passed", (row["detail"]["checks"][0], row["detail"]["timeline"])
    assert checks_of(row) == {"owner-gone": True, "stolen-refused": True, "rotated": True,
                              "consumer-healthy": True}
    bad = main.run("owner-departs", skip=["rotate"])
    assert bad["status"] == "failed"
    got = checks_of(bad)
    assert got["stolen-refused"] is False and got["rotated"] is False
    assert got["owner-gone"] is True and got["consumer-healthy"] is True
    assert sorted(bad["detail"]["scores"]["still_valid"]) == ["billing-api", "reports-token",
                                                               "triage-db"]


def _tasks(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from console.incidents import load

    dstore = Store(Path(row["detail"]["drill_db"]))
    try:
        return {t["step"]: t for t in load(dstore, row["detail"]["incident"])["tasks"]}
    finally:
        dstore.close()


def test_a_rotate_that_matches_nothing_is_not_done(main: Main) -> None:
    # without the reassign, `rotate owner: team-platform` names no credential: rotating
    # nothing is no eradication, however fast
    bad = main.run("owner-departs", skip=["reassign"])
    assert bad["status"] == "failed"
    eradicate = _tasks(bad)["eradicate"]
    assert eradicate["status"] != "done"
    assert "matched no credential" in eradicate["note"]
    scores = bad["detail"]["scores"]
    assert scores["times"]["ttr"] is None
    assert scores["ratings"]["eradicate"]["rating"] == "unable to perform"
    assert scores["ratings"]["verify"]["rating"] == "unable to perform"
    assert sorted(scores["still_valid"]) == ["billing-api", "reports-token", "triage-db"]
    assert any(p.startswith("eradicate: unable to perform") and "not done" in p
               for p in bad["detail"]["plan"])


def test_auto_confirmed_tasks_are_not_exercised_and_failed_checks_fail_verify(
        main: Main) -> None:
    row = main.run("provider-key-leaked")
    assert row["status"] == "passed"
    ratings = row["detail"]["scores"]["ratings"]
    # the scenario contains nothing and notifies nobody: the responder only clicked through
    assert ratings["contain"]["rating"] == "not exercised"
    assert ratings["communicate"]["rating"] == "not exercised"
    assert row["detail"]["scores"]["times"]["ttc"] is None
    assert ratings["eradicate"]["level"] == 3 and ratings["verify"]["level"] == 3
    assert "not exercised" in _tasks(row)["contain"]["note"]
    # nothing eradicated: the key stays valid, and nothing may be rated as performed but
    # the opening of the incident
    bad = main.run("provider-key-leaked", skip=["eradicate"])
    got = bad["detail"]["scores"]["ratings"]
    assert checks_of(bad)["stolen-refused"] is False
    performed = {cap for cap, r in got.items() if r["level"]}
    assert performed == {"detect"}, got
    assert got["contain"]["rating"] == "not exercised"
    assert got["verify"]["rating"] == "unable to perform"
    assert "stolen-refused" in got["verify"]["why"]


def test_automated_steps_take_skips_of_other_words_and_record_their_outcome(
        main: Main) -> None:
    """A drill whose steps run through run_incident, skipping a sub-step (no incident step):
    it runs; the KV secret cannot be revoked at its issuer, so the automated contain is
    reported as the runner left it (skipped), not as done."""
    folder = Path(os.environ["KEYSHIFT_HOME"]) / "drills"
    folder.mkdir(exist_ok=True)
    (folder / "kv-auto.yaml").write_text(
        "title: kv auto\nworld:\n  agents: [{name: a, owner: o}]\n"
        "  parts: [{part: kv-generated, name: k, agent: a}]\n"
        "inject: [{step: steal, credential: k}]\n"
        "respond: {incident: {credential: k}, automated: [contain, eradicate]}\n"
        "checks: [{check: stolen-refused}, {check: rotated}]\n")
    events: list[dict[str, Any]] = []
    row = drills.run_drill(main.store, main.audit, drills.get_scenario("kv-auto"),
                           actor="drill-test", skip=["revoke"], on_event=events.append)
    assert row["status"] == "passed", row["detail"]["checks"]
    status = {e["step"]: e["status"] for e in events if e["event"] == "task"}
    tasks = _tasks(row)
    assert status["contain"] == tasks["contain"]["status"] == "skipped"
    assert status["eradicate"] == tasks["eradicate"]["status"] == "done"
    ratings = row["detail"]["scores"]["ratings"]
    assert ratings["contain"]["level"] == 0 and ratings["eradicate"]["level"] == 3


# --- worked by a person (no --auto), verified by reference in a later process ------------------


def _at_terminal(argv: list[str], script: list[tuple[str, Any]], timeout: float = 120) -> str:
    """Run ``argv`` on a real pseudo-terminal, as a person at it: when the output shows a
    prompt, call its answer (the person acts when asked, not before) and type what it
    returns. Returns what the terminal showed and the exit code."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execv(argv[0], argv)
    seen, steps = "", list(script)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 4096).decode(errors="replace")
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            if steps and steps[0][0] in seen:
                prompt, answer = steps.pop(0)
                seen = seen.replace(prompt, f"<{prompt}>", 1)
                os.write(fd, (answer() + "\r").encode())
    finally:
        _, status = os.waitpid(pid, 0)
    return seen + f"\n<exit {os.waitstatus_to_exitcode(status)}>"


def test_provider_key_leak_worked_by_a_person_is_verified_by_reference(main: Main) -> None:
    """The person rotates the leaked key with `keyshift rotate` at a terminal (minting and
    revoking at the stand-in's console when asked); `drill verify`, in a later process with
    no probe, judges the switch from the revoke time against the delivery: revoked after is
    a pass, revoked before the new key was delivered (a hasty person) fails probe-failures."""
    from console.drills.world import standin

    def work(hasty: bool) -> tuple[dict[str, Any], str]:
        run_id, base, info = main.start("provider-key-leaked")
        world = json.loads((Path(info["inventory"]).parent / "world.json").read_text())
        rec = world["records"]["llm-key"]
        old_ids = main.store.get_drill_run(run_id)["detail"]["refs"]["llm-key"]["key_ids"]
        assert old_ids

        def revoke() -> None:
            for key_id in old_ids:
                standin(rec["provider"], "revoke", id=key_id)

        def mint() -> str:
            key = str(standin(rec["provider"], "keys", name="rotated")["key"])
            main.canaries.add(key)
            if hasty:
                revoke()
            return key

        def done() -> str:
            if not hasty:
                revoke()
            return "y"

        shown = _at_terminal([*base, "rotate", rec["credential_id"], "--grace", "0"], [
            (f"Rotate {rec['credential_id']}? [y/N]:", lambda: "y"),
            ("new key for llm-key: ", mint),
            ("now. Done? [y/N]:", done)])
        assert "<exit 0>" in shown, shown[-2000:]
        closed = main.work(base, "incident", "run", info["incident"], "--yes")
        got, row = main.verify(run_id)
        return row, shown + got.stdout + got.stderr + closed.stdout + closed.stderr + \
            f"<verify exit {got.returncode}>"

    row, text = work(hasty=False)
    assert "<verify exit 0>" in text, text[-3000:]
    assert checks_of(row) == {"stolen-refused": True, "consumer-healthy": True,
                              "probe-failures": True, "rotated": True}
    why = {c["check"]: c["why"] for c in row["detail"]["checks"]}["probe-failures"]
    assert "no probe ran in this process" in why and "after the new one" in why

    bad, bad_text = work(hasty=True)
    assert "<verify exit 1>" in bad_text, bad_text[-3000:]
    assert checks_of(bad) == {"stolen-refused": True, "consumer-healthy": True,
                              "probe-failures": False, "rotated": True}
    why = {c["check"]: c["why"] for c in bad["detail"]["checks"]}["probe-failures"]
    assert "before the new one was delivered" in why
    main.no_canary(text, bad_text, json.dumps(row), json.dumps(bad),
                   main.db.read_bytes().decode("latin-1"))


def test_a_crashed_rotation_resumed_by_a_person_is_verified_and_one_left_is_caught(
        main: Main) -> None:
    run_id, base, _ = main.start("rotation-failed-half-way")
    resumed = main.work(base, "rotate", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    got, row = main.verify(run_id)
    assert got.returncode == 0, got.stdout + got.stderr
    assert checks_of(row) == {"no-unfinished-runs": True, "consumer-healthy": True}
    assert row["detail"]["notes"]["crashed_runs"]  # the run the fault left, by id

    # the person looks at the incident and does nothing: the half-done run still holds it
    run_id, base, info = main.start("rotation-failed-half-way")
    looked = main.work(base, "incident", "show", info["incident"])
    assert looked.returncode == 0, looked.stderr
    got, bad = main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    assert checks_of(bad) == {"no-unfinished-runs": False, "consumer-healthy": True}
    main.no_canary(resumed.stdout, resumed.stderr, looked.stdout, got.stdout, json.dumps(row),
                   json.dumps(bad), main.db.read_bytes().decode("latin-1"))


def test_drill_verify_of_a_world_gone_missing_is_one_typed_line(main: Main) -> None:
    """An unexpected error in drill verify (its world.json moved away) exits 1 naming the
    error's type, with no traceback; the run still waits, and cleanup removes its world."""
    folder = Path(os.environ["KEYSHIFT_HOME"]) / "drills"
    folder.mkdir(exist_ok=True)
    (folder / "tiny.yaml").write_text(
        "title: tiny\nworld:\n  agents: [{name: a, owner: o}]\n"
        "  parts: [{part: kv-generated, name: k, agent: a}]\n"
        "inject: [{step: steal, credential: k}]\n"
        "respond: {incident: {credential: k}, steps: {eradicate: [{action: rotate}]}}\n"
        "checks: [{check: stolen-refused}]\n")
    run_id, _, info = main.start("tiny")
    world = Path(info["inventory"]).parent / "world.json"
    world.rename(world.with_suffix(".away"))
    got, row = main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    assert "unexpected FileNotFoundError" in got.stderr and "Traceback" not in got.stderr
    assert len(got.stderr.strip().splitlines()) <= 2 and row["status"] == "awaiting-response"
    world.with_suffix(".away").rename(world)
    done = main.cli("drill", "cleanup", run_id)
    assert done.returncode == 0, done.stderr


# --- the CLI: run, anchor, report, exit codes --------------------------------------------------


def test_cli_run_json_anchor_verifies_on_the_drill_store(main: Main) -> None:
    got = main.cli("drill", "run", "provider-key-leaked", "--auto", "--format", "json")
    assert got.returncode == 0, got.stderr
    result = json.loads(got.stdout.strip().splitlines()[-1])
    assert result["status"] == "passed"
    row = main.store.get_drill_run(result["run"])
    assert row is not None
    anchor = row["detail"]["anchor"]
    db = row["detail"]["drill_db"]
    ok = subprocess.run([KEYSHIFT, "--db", db, "audit", "verify", "--anchor",
                         f"{anchor['seq']}:{anchor['hash']}"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # a wrong anchor is refused: the check is real
    wrong = subprocess.run([KEYSHIFT, "--db", db, "audit", "verify", "--anchor",
                            f"{anchor['seq']}:{'0' * 64}"], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == 7
    failed = main.cli("drill", "run", "provider-key-leaked", "--auto", "--skip", "revoke")
    assert failed.returncode == 1
    bad_skip = main.cli("drill", "run", "provider-key-leaked", "--auto", "--skip", "nope")
    assert bad_skip.returncode == 2 and "skippable" in bad_skip.stderr
    listing = main.cli("drill", "ls")
    assert listing.returncode == 0 and "provider-key-leaked" in listing.stdout


def test_a_drill_killed_mid_way_is_reported_interrupted_and_cleaned_up(main: Main) -> None:
    proc = subprocess.Popen(
        [KEYSHIFT, "--db", str(main.db), "drill", "run", "owner-departs", "--auto",
         "--format", "json"], env=dict(os.environ), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        # kill it once its world exists and the response has begun
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line).get("event") == "incident":
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (row,) = main.store.drill_runs("owner-departs")
    assert row["status"] == "running"
    mount = f"drill-{json.loads((Path(row['detail']['dir']) / 'world.json').read_text())['tag']}"
    vault = vault_client()
    assert f"{mount}/" in vault.sys.list_mounted_secrets_engines()["data"]
    listing = main.cli("drill", "ls", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    runs = {r["id"]: r for r in json.loads(listing.stdout)["runs"]}
    assert runs[row["id"]]["status"] == "interrupted"
    assert "drill cleanup" in runs[row["id"]]["error"]
    done = main.cli("drill", "cleanup", row["id"])
    assert done.returncode == 0, done.stderr
    assert f"{mount}/" not in vault.sys.list_mounted_secrets_engines()["data"]
    assert not (Path(row["detail"]["dir"]) / "workspace").exists()
    actions = [e.action for e in main.audit.tail(5)]
    assert "drill.interrupted" in actions and "drill.cleanup" in actions


def test_ctrl_c_records_the_run_interrupted_and_removes_its_world(main: Main) -> None:
    seen: dict[str, Any] = {}

    def press_ctrl_c(event: dict[str, Any]) -> None:
        if event["event"] == "start":
            seen["run"] = event["run"]
        if event["event"] == "incident":
            run_dir = Path(os.environ["KEYSHIFT_HOME"]) / "drills" / seen["run"]
            seen["mount"] = f"drill-{json.loads((run_dir / 'world.json').read_text())['tag']}"
            signal.raise_signal(signal.SIGINT)  # as a person's Ctrl-C reaches the process

    with pytest.raises(KeyboardInterrupt):
        drills.run_drill(main.store, main.audit, drills.get_scenario("owner-departs"),
                         actor="drill-test", on_event=press_ctrl_c)
    row = main.store.get_drill_run(seen["run"])
    assert row is not None and row["status"] == "interrupted"
    assert row["detail"]["error"].startswith("interrupted (Ctrl-C)")
    assert row["detail"]["cleanup"]["errors"] == [] and row["detail"]["cleanup"]["removed"]
    assert f"{seen['mount']}/" not in vault_client().sys.list_mounted_secrets_engines()["data"]
    assert "drill.interrupted" in [e.action for e in main.audit.tail(3)]


def test_a_sandbox_that_dies_gives_a_typed_error_and_the_drill_job_alerts(
        private_sandbox_env: Path, tmp_path: Path) -> None:
    """The servers die mid-run (killed once the world is built): a typed error naming the
    exception's type only, recorded; then, with the state file still there, a new drill is
    refused up front (exit 9, the hint to start the sandbox) and the scheduled job alerts."""
    import threading

    from console import sandbox as sb
    from console.alerts import Alerter
    from console.config import loads_inventory
    from console.errors import KeyshiftError
    from console.schedule.jobs import JobContext, drill_job

    state = sb.up()
    db = tmp_path / "main.db"
    store = Store(db)
    audit = AuditLog(store)

    def kill_servers(event: dict[str, Any]) -> None:
        if event["event"] == "world":
            for svc in (state.provider, state.moto, state.vault):
                if svc is not None:
                    os.kill(svc.pid, signal.SIGKILL)
            for _ in range(200):  # SIGKILL lands asynchronously: until nothing answers
                if not any(svc.healthy for svc in sb.status().services):
                    break
                threading.Event().wait(0.05)

    try:
        with pytest.raises(KeyshiftError) as err:
            drills.run_drill(store, audit, drills.get_scenario("provider-key-leaked"),
                             actor="drill-test", on_event=kill_servers)
        assert err.value.exit_code == 9, err.value.one_line()
        text = err.value.one_line()
        assert "sandbox up" in text and "http" not in text and "127.0.0.1" not in text
        (row,) = store.drill_runs("provider-key-leaked")
        assert row["status"] == "error" and row["detail"]["error"] == text[:300]

        got = subprocess.run([KEYSHIFT, "--db", str(db), "drill", "run", "provider-key-leaked",
                              "--auto"], capture_output=True, text=True, env=dict(os.environ),
                             timeout=120, stdin=subprocess.DEVNULL)
        assert got.returncode == 9, got.stderr
        assert "keyshift sandbox up" in got.stderr and "internal error" not in got.stderr
        assert "Traceback" not in got.stderr

        loaded = loads_inventory("version: 1\nschedule:\n  drill: {every: quarterly, "
                                 "scenario: provider-key-leaked}\nalerts:\n  command: "
                                 "[/bin/true]\n", base_dir=tmp_path)
        ctx = JobContext(store, loaded, audit, "schedule",
                         Alerter(loaded.inventory.alerts, store),
                         lambda: datetime.now(UTC), threading.Event())
        outcome = drill_job(ctx)
        assert outcome.status == "failed" and "not answering" in (outcome.error or "")
        assert [a["event"] for a in store.alerts()] == ["drill-failed"]
    finally:
        store.close()


# --- scenario files ---------------------------------------------------------------------------


def test_bad_scenario_yaml_gives_file_line_col(tmp_path: Path) -> None:
    text = ("title: t\n"
            "world:\n"
            "  agents: [{name: a, owner: o}]\n"
            "  parts:\n"
            "    - {part: provider-kee, name: k, agent: a}\n"
            "inject:\n"
            "  - {step: steal, credential: nope}\n"
            "respond: {incident: {credential: k}}\n"
            "checks: [{check: stolen-refused, credential: k}]\n")
    with pytest.raises(ConfigError) as err:
        loads_scenario(text, "mine.yaml", default_name="mine")
    lines = err.value.report()  # type: ignore[attr-defined]
    assert "mine.yaml:5:" in lines and "provider-kee" in lines and "provider-key" in lines
    assert "mine.yaml:7:" in lines and "nope" in lines
    with pytest.raises(ConfigError) as err:
        loads_scenario("title: t\nworld: {parts: []}\nbogus: 1\n", "x.yaml", default_name="x")
    assert "x.yaml:3:1: bogus: unknown field 'bogus'" in err.value.report()  # type: ignore


def test_user_scenarios_load_from_the_config_dir_and_cli_says_where(keyshift_home: Path) -> None:
    folder = keyshift_home / "drills"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "title: mine\nworld:\n  agents: [{name: a, owner: o}]\n"
        "  parts: [{part: provider-key, name: k, agent: a}]\n"
        "inject: [{step: steal, credential: k}]\n"
        "respond: {incident: {credential: k}, steps: {eradicate: [{action: rotate}]}}\n"
        "checks: [{check: stolen-refused}]\n")
    scenarios = drills.all_scenarios()
    assert scenarios["mine"].source.endswith("mine.yaml")
    assert {"provider-key-leaked", "rotation-failed-half-way", "owner-departs"} <= set(scenarios)
    (folder / "broken.yaml").write_text("title: b\nworld:\n  parts: [{part: x, name: k}]\n")
    got = subprocess.run([KEYSHIFT, "drill", "show", "mine"], capture_output=True, text=True,
                         env=dict(os.environ), timeout=60)
    assert got.returncode == 2 and "broken.yaml:" in got.stderr
    with pytest.raises(UsageError):
        from console.drills.runner import run_drill

        run_drill(Store(keyshift_home / "m.db"), AuditLog(Store(keyshift_home / "m.db")),
                  scenarios["mine"], actor="t", skip=["bogus"])


# --- scoring (pure) ---------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _inc(steps: tuple[str, ...] = ("declare", "contain", "eradicate", "verify", "notify",
                                    "recover"),
         bare: tuple[str, ...] = ("contain",), **done: tuple[str, int]) -> dict[str, Any]:
    """A hand-made incident: ``done`` step -> (status, seconds after T0); every task carries
    evidence but those in ``bare``."""
    tasks = []
    for n, step in enumerate(steps, 1):
        status, secs = done.get(step, ("todo", 0))
        tasks.append({"position": n, "step": step, "status": status,
                      "done_at": (T0 + timedelta(seconds=secs)).isoformat()
                      if status != "todo" else None,
                      "evidence": [] if step in bare else [{"kind": "run", "ref": "x"}]})
    return {"opened_at": (T0 + timedelta(seconds=5)).isoformat(), "tasks": tasks}


TARGETS = {"ttd": 10.0, "ttc": 30.0, "ttr": 60.0, "ttv": 90.0}


def test_scoring_times_ratings_and_score() -> None:
    inc = _inc(bare=(), declare=("done", 6), contain=("done", 45), eradicate=("done", 200),
               verify=("done", 80), notify=("skipped", 90), recover=("done", 95))
    checks = [{"check": "stolen-refused", "capability": "eradicate", "ok": True, "why": "",
               "detail": {"still_valid": []}},
              {"check": "consumer-healthy", "capability": "recover", "ok": False, "why": "x",
               "detail": {"broken": ["k"]}}]
    got = scoring.score(injected_at=T0, incident=inc, checks=checks, targets=TARGETS,
                        acted_steps=["eradicate", "contain"])
    assert got["times"] == {"ttd": 5.0, "ttc": 45.0, "ttr": 200.0, "ttv": 80.0}
    r = {k: v["level"] for k, v in got["ratings"].items()}
    # detect within target; contain within twice; eradicate past twice; verify done, but a
    # check failed, so the outcome was not verified; recover done but its check failed;
    # notify skipped = not done
    assert r == {"detect": 3, "contain": 2, "eradicate": 1, "verify": 0, "recover": 1,
                 "communicate": 0}
    assert got["ratings"]["verify"]["why"] == "1 check(s) failed: consumer-healthy"
    # the same, every check passing: verify within its target
    ok_checks = [dict(c, ok=True) for c in checks]
    all_ok = scoring.score(injected_at=T0, incident=inc, checks=ok_checks, targets=TARGETS,
                           acted_steps=["eradicate", "contain"])
    assert all_ok["ratings"]["verify"]["level"] == 3
    assert got["consumers_broken"] == ["k"] and not got["passed"]
    assert got["checklist"] == {"done": 5, "skipped": 1, "confirmed": 0, "total": 6,
                                "completion": 0.833}
    assert got["evidence"] == {"expected": 2, "with_evidence": 2, "completeness": 1.0}
    expected = 100 * (0.5 * 1 / 2 + 0.2 * 5 / 6 + 0.3 * (3 + 2 + 1 + 0 + 1 + 0) / 18)
    assert got["score"] == round(expected, 1)
    plan = scoring.improvement_plan(checks, got, {"consumer-healthy": "deliver first"}, TARGETS)
    assert plan[0] == "consumer-healthy: deliver first (x)"
    assert any(p.startswith("eradicate: took 200 s") for p in plan)
    assert any(p.startswith("communicate: unable to perform") for p in plan)
    assert not any(p.startswith("detect") for p in plan)
    # contain acted on with nothing behind it: evidence incomplete, and unable
    bare = scoring.score(injected_at=T0, incident=_inc(
        declare=("done", 6), contain=("done", 45), eradicate=("done", 200)),
        checks=ok_checks, targets=TARGETS, acted_steps=["eradicate", "contain"])
    assert bare["evidence"] == {"expected": 2, "with_evidence": 1, "completeness": 0.5}
    assert bare["ratings"]["contain"]["level"] == 0


def test_scoring_rates_only_what_was_done() -> None:
    """A task the --auto responder merely confirmed proves nothing; an action that did nothing
    (no evidence) is no performance; a failed check with no task of its own still fails
    verify."""
    inc = _inc(bare=("contain", "eradicate", "notify"), declare=("done", 1),
               contain=("done", 2), eradicate=("done", 3), verify=("done", 4),
               notify=("done", 5), recover=("done", 6))
    passing = [{"check": "rotated", "capability": "eradicate", "ok": True, "why": "",
                "detail": {}}]
    got = scoring.score(injected_at=T0, incident=inc, checks=passing, targets=TARGETS,
                        acted_steps=["eradicate"], confirmed_steps=["contain", "notify"])
    ratings = got["ratings"]
    assert ratings["contain"]["rating"] == "not exercised"
    assert ratings["communicate"]["rating"] == "not exercised"
    # its done_at is when the responder clicked through: no time to contain
    assert got["times"]["ttc"] is None
    # eradicate was acted on but has nothing behind it: unable, though its check passed
    assert ratings["eradicate"]["level"] == 0 and "no evidence" in ratings["eradicate"]["why"]
    assert got["checklist"]["confirmed"] == 2
    # confirmed, and its check failed: the failure is rated, not hidden as "not exercised"
    failing = [{"check": "attacker-tokens-refused", "capability": "contain", "ok": False,
                "why": "still valid", "detail": {}}]
    bad = scoring.score(injected_at=T0, incident=inc, checks=failing, targets=TARGETS,
                        acted_steps=["eradicate"], confirmed_steps=["contain", "notify"])
    assert bad["ratings"]["contain"]["level"] == 0
    assert "attacker-tokens-refused" in bad["ratings"]["contain"]["why"]
    # a template with no recover task: a broken consumer still fails verify, and says so
    no_recover = _inc(steps=("declare", "contain", "eradicate", "verify"), bare=(),
                      declare=("done", 1), contain=("done", 2), eradicate=("done", 3),
                      verify=("done", 4))
    broken = [{"check": "consumer-healthy", "capability": "recover", "ok": False,
               "why": "broken", "detail": {"broken": ["k"]}}]
    got = scoring.score(injected_at=T0, incident=no_recover, checks=broken, targets=TARGETS,
                        acted_steps=["contain", "eradicate"])
    assert got["ratings"]["recover"]["rating"] == "not exercised"
    assert got["ratings"]["verify"]["level"] == 0
    assert "consumer-healthy" in got["ratings"]["verify"]["why"]
    assert got["ratings"]["contain"]["level"] == 3 and got["ratings"]["eradicate"]["level"] == 3


def test_scoring_all_passed_and_no_incident() -> None:
    inc = _inc(declare=("done", 1), contain=("done", 2), eradicate=("done", 3),
               verify=("done", 4), notify=("done", 5), recover=("done", 6))
    ok = [{"check": "rotated", "capability": "eradicate", "ok": True, "why": "", "detail": {}}]
    got = scoring.score(injected_at=T0, incident=inc, checks=ok, targets=TARGETS)
    assert got["passed"] and got["score"] == 100.0
    none = scoring.score(injected_at=T0, incident=None, checks=ok, targets=TARGETS)
    assert none["times"]["ttd"] is None and none["ratings"]["detect"]["level"] == 0
    assert not scoring.score(injected_at=T0, incident=inc, checks=[], targets=TARGETS)["passed"]


# --- the schedule's drill job -----------------------------------------------------------------


def test_schedule_drill_job_alerts_a_failed_check_and_a_regression(
        main: Main, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from console.alerts import Alerter
    from console.config import loads_inventory
    from console.schedule.jobs import JobContext, drill_job, job_specs

    def ctx_for(scenario: str) -> JobContext:
        loaded = loads_inventory(
            f"version: 1\nschedule:\n  drill: {{every: quarterly, scenario: {scenario}}}\n"
            "alerts:\n  command: [/bin/true]\n", base_dir=main.tmp)
        return JobContext(main.store, loaded, main.audit, "schedule",
                          Alerter(loaded.inventory.alerts, main.store),
                          lambda: datetime.now(UTC), threading.Event())

    ctx = ctx_for("provider-key-leaked")
    assert [s.name for s in job_specs(ctx.schedule)][-1] == "drill"
    assert job_specs(ctx_for("x").schedule)[-1].every == timedelta(days=91)
    ok = drill_job(ctx)
    assert ok.status == "ok" and not main.store.alerts()
    # the same scenario answered with a wrong response: a failed check and a lower score
    from console.drills import runner

    real = runner.run_drill

    def skipping(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return real(*args, **{**kwargs, "skip": ["revoke"]})

    # the real drill, answered with a wrong response (the person never revokes)
    monkeypatch.setattr(drills, "run_drill", skipping)
    bad = drill_job(ctx)
    assert bad.status == "failed" and "stolen-refused" in (bad.error or "")
    events = sorted(a["event"] for a in main.store.alerts())
    assert events == ["drill-failed", "drill-regression"]
    no_job = loads_inventory("version: 1\n", base_dir=main.tmp)
    assert "drill" not in [s.name for s in job_specs(no_job.inventory.schedule)]
