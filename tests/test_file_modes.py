"""What keyshift writes is private whatever the umask (DESIGN.md invariant 7): keyshift run
under ``umask 000`` leaves every directory it made 0700 and every file 0600: the data dir, the
store and its -wal and -shm, the log, reports, a key file, the sandbox dir. Against the session
sandbox's real servers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from rotation_support import build

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")


def under_umask_000(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # the shell sets the umask and execs, so keyshift itself starts with umask 000
    return subprocess.run(["sh", "-c", 'umask 000 && exec "$@"', "sh", *argv], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def modes(root: Path) -> dict[str, str]:
    """Every path under ``root`` (and root itself) with its permission bits, e.g. ``0o600``."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def test_everything_keyshift_makes_is_private_under_umask_000(sandbox: Any,
                                                               tmp_path: Path) -> None:
    home = tmp_path / "home"  # keyshift makes it
    s = build("generated-kv2", tmp_path / "scenario", sandbox)
    inventory = str(s.tmp / "inventory.yaml")
    env = dict(os.environ, KEYSHIFT_HOME=str(home), KEYSHIFT_ACTOR="modes-test")

    def keyshift(*args: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        proc = under_umask_000(KEYSHIFT, "--inventory", inventory, *args, env=environ)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    keyshift("sync")
    keyshift("rotate", s.cred.id, "--yes", "--grace", "0")
    keyshift("report", "--out", str(home / "reports"))
    keyshift("secret", "keygen", f"file:{home / 'keys' / 'fingerprint.key'}")
    # the sandbox dir under the data dir, as `keyshift sandbox ...` makes it with no override
    no_override = {k: v for k, v in env.items() if k != "KEYSHIFT_SANDBOX_DIR"}
    under_umask_000(KEYSHIFT, "sandbox", "status", env=no_override)

    found = modes(home)
    # what each command should have left, so a check over an empty tree cannot pass
    for expected in ("keyshift.db", "keyshift.log", "reports/report.md", "reports/report.html",
                     "keys/fingerprint.key", "sandbox"):
        assert expected in found, found
    for name, mode in found.items():
        path = home / name
        want = "0o700" if path.is_dir() else "0o600"
        assert mode == want, f"{name} is {mode}, not {want}: {found}"


# Opens the store with keyshift's own Store, writes, and lists the directory while the
# connection is open (SQLite removes -wal and -shm when the last connection closes cleanly).
HOLD_OPEN = """
import json, stat, sys
from pathlib import Path
from console.store import Store
db = Path(sys.argv[1])
store = Store(db)
with store.transaction():
    store.set_meta("file-modes-test", "written")
print(json.dumps({p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in db.parent.iterdir()}))
store.close()
"""


def test_the_store_its_wal_and_shm_are_0600_under_umask_000(tmp_path: Path) -> None:
    db = tmp_path / "new-dir" / "ks.db"  # the store makes its directory too
    proc = under_umask_000(sys.executable, "-c", HOLD_OPEN, str(db), env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found == {"ks.db": "0o600", "ks.db-wal": "0o600", "ks.db-shm": "0o600"}, found
    assert oct(stat.S_IMODE(db.parent.stat().st_mode)) == "0o700"


def test_a_log_file_left_wider_by_an_older_keyshift_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    log = home / "keyshift.log"
    log.write_text("an old line\n")
    log.chmod(0o644)
    env = dict(os.environ, KEYSHIFT_HOME=str(home))
    proc = under_umask_000(KEYSHIFT, "--inventory", str(tmp_path / "none.yaml"), "rules",
                           env=env)
    assert proc.returncode == 0, proc.stderr
    assert oct(stat.S_IMODE(log.stat().st_mode)) == "0o600"
    assert log.read_text().startswith("an old line\n")  # appended to, not replaced
