"""Drills on the Vault side against the real sandbox: vault-token-leaked (issue 12 scenario 5)
runs --auto and passes its checks (the stolen token refused by lookup-self, the review found
exactly the secrets it read in the audit device, those secrets rotated and the unread one not,
the agent healthy with a new token); skipping review leaves the read secrets unrotated and
unfound, skipping contain and eradicate leaves the stolen token valid; the leaked log is gone
after cleanup and no value is in the run's record or report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_drills import Main

from console.sandbox import SandboxState


@pytest.fixture
def main(sandbox: SandboxState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KEYSHIFT_HOME", str(home))
    m = Main(tmp_path)
    yield m
    m.store.close()


def results(row: dict[str, Any]) -> dict[tuple[str, str], bool]:
    return {(c["check"], c["target"]): c["ok"] for c in row["detail"]["checks"]}


def test_vault_token_leaked_into_a_log(main: Main) -> None:
    row = main.run("vault-token-leaked")
    got = results(row)
    assert row["status"] == "passed", json.dumps(row["detail"]["checks"], indent=1)
    assert all(got.values()) and len(got) == 8
    found = next(c for c in row["detail"]["checks"] if c["check"] == "token-reads-found")
    assert sorted(found["detail"]["found"]) == ["db-password", "search-key"]
    assert found["detail"]["extra"] == [] and found["detail"]["missed"] == []
    assert row["detail"]["cleanup"]["errors"] == []
    run_dir = Path(row["detail"]["dir"])
    assert not list(run_dir.rglob("agent.log"))  # the leaked log went with the workspace
    ratings = row["detail"]["scores"]["ratings"]
    assert ratings["contain"]["level"] >= 2 and ratings["eradicate"]["level"] >= 2

    # no review: the token's reads are never found, so what it read is not rotated
    blind = main.run("vault-token-leaked", skip=["review"])
    got = results(blind)
    assert blind["status"] == "failed"
    assert got[("token-reads-found", "all")] is False
    assert got[("rotated", "db-password")] is False and got[("rotated", "search-key")] is False
    assert got[("stolen-refused", "db-password")] is False
    assert got[("stolen-refused", "assistant-token")] is True  # contain still revoked it
    assert got[("consumer-healthy", "assistant-token")] is True

    # no contain and no rotation: the stolen token still answers lookup-self
    open_door = main.run("vault-token-leaked", skip=["contain", "eradicate"])
    got = results(open_door)
    assert open_door["status"] == "failed"
    assert got[("stolen-refused", "assistant-token")] is False
    assert "assistant-token" in open_door["detail"]["scores"]["still_valid"]
    assert got[("token-reads-found", "all")] is True  # review finds the reads all the same

    report = main.cli("drill", "report", row["id"], "--format", "md")
    assert report.returncode == 0, report.stderr
    main.no_canary(report.stdout, json.dumps(row), json.dumps(blind), json.dumps(open_door),
                   main.db.read_bytes().decode("latin-1"))
    assert os.environ["KEYSHIFT_HOME"]


def test_vault_token_leaked_worked_by_a_person_is_verified_by_reference(main: Main) -> None:
    """Without --auto: the person works the incident through the CLI in processes of their
    own, and `drill verify` (another process, no stolen copy) checks the token by its
    accessor, the reads from the run's record, the KV secrets by version."""
    run_id, base, info = main.start("vault-token-leaked")
    worked = main.work(base, "incident", "run", info["incident"], "--yes")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    got, row = main.verify(run_id)
    assert got.returncode == 0, got.stdout + got.stderr
    assert row["status"] == "passed" and all(results(row).values()) and len(results(row)) == 8
    refused = next(c for c in row["detail"]["checks"]
                   if c["check"] == "stolen-refused" and c["target"] == "assistant-token")
    assert "by reference" in refused["why"]
    refs = row["detail"]["refs"]
    assert set(refs["assistant-token"]) == {"accessor"}
    assert row["detail"]["notes"]["token_reads"] == {"assistant-token": ["db-password",
                                                                         "search-key"]}

    # worked wrongly: no review, so what the token read is neither found nor rotated
    run_id, base, info = main.start("vault-token-leaked")
    worked = main.work(base, "incident", "run", info["incident"], "--yes", "--skip", "review")
    got, bad = main.verify(run_id)
    assert got.returncode == 1, got.stdout + got.stderr
    failed = {k for k, ok in results(bad).items() if not ok}
    assert failed == {("token-reads-found", "all"), ("stolen-refused", "db-password"),
                      ("stolen-refused", "search-key"), ("rotated", "db-password"),
                      ("rotated", "search-key")}, failed
    assert bad["detail"]["cleanup"]["errors"] == []
    main.no_canary(got.stdout, got.stderr, worked.stdout, worked.stderr, json.dumps(row),
                   json.dumps(bad), main.db.read_bytes().decode("latin-1"),
                   Path(info["drill_db"]).read_bytes().decode("latin-1"))
