"""keyshift's own secrets by reference of every kind (console/secret_refs.py): keyring:, env:,
file: (0600, the current user's, a regular file) and credential: (systemd), the inventory's
validation of them, keyshift's own keys behind any of them (console/own_keys.py), and
`keyshift secret keygen`. The keyring is the real Secret Service of the test session."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest

from console import own_keys, secret_refs
from console.config import loads_inventory
from console.errors import ConfigError, SecretError
from console.inventory import AwsSource, Inventory
from console.redaction import OWN, redact_active

KEYSHIFT = str(Path(sys.executable).parent / "keyshift")


@pytest.fixture(autouse=True)
def _fresh_keys(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv(own_keys.FINGERPRINT_ENV, raising=False)
    monkeypatch.delenv(own_keys.AUDIT_ENV, raising=False)
    own_keys._reset_for_tests()
    yield
    own_keys._reset_for_tests()


def secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / f"secret-{uuid.uuid4().hex[:6]}"
    path.write_text(text)
    path.chmod(mode)
    return path


def refused(ref: str) -> str:
    with pytest.raises(SecretError) as err:
        secret_refs.resolve(ref)
    return err.value.one_line()


# --- env: -----------------------------------------------------------------------------------


def test_env_reference_reads_the_variable_and_keeps_it_out_of_logs(monkeypatch):
    value = "env-value-" + uuid.uuid4().hex
    monkeypatch.setenv("KS_TEST_TOKEN", value)
    assert secret_refs.resolve("env:KS_TEST_TOKEN") == value
    assert value in OWN and redact_active(f"x {value} y") == "x [redacted] y"


@pytest.mark.parametrize("setting", [None, "", "   "])
def test_env_reference_absent_or_empty_names_the_ref_and_how(monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv("KS_TEST_ABSENT", raising=False)
    else:
        monkeypatch.setenv("KS_TEST_ABSENT", setting)
    line = refused("env:KS_TEST_ABSENT")
    assert line.startswith("env:KS_TEST_ABSENT: the environment variable KS_TEST_ABSENT")
    assert ("is not set" if setting is None else "is empty") in line
    assert "hint: set KS_TEST_ABSENT" in line


# --- file: ---------------------------------------------------------------------------------


def test_file_reference_reads_a_private_file_without_its_trailing_newline(tmp_path):
    value = "file-value-" + uuid.uuid4().hex
    path = secret_file(tmp_path, value + "\n")
    assert secret_refs.resolve(f"file:{path}") == value
    assert value in OWN
    crlf = secret_file(tmp_path, value + "\r\n")
    assert secret_refs.resolve(f"file:{crlf}") == value
    # only one newline is the file's; inner and leading whitespace belong to the secret
    kept = secret_file(tmp_path, " a b\n\n")
    assert secret_refs.resolve(f"file:{kept}") == " a b\n"
    stricter = secret_file(tmp_path, value, mode=0o400)
    assert secret_refs.resolve(f"file:{stricter}") == value


def test_file_reference_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    secret_file(tmp_path, "home-value-123456").rename(tmp_path / "ks-token")
    assert secret_refs.resolve("file:~/ks-token") == "home-value-123456"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_file_readable_by_others_is_refused_with_chmod(tmp_path, mode):
    value = "leaky-" + uuid.uuid4().hex
    path = secret_file(tmp_path, value, mode)
    line = refused(f"file:{path}")
    assert f"has mode {mode:04o}" in line and f"hint: chmod 600 {path}" in line
    assert value not in line and value not in OWN


def test_file_of_another_user_is_refused_with_chown(tmp_path):
    if os.geteuid() != 0:
        # a file of another user is made by chown, which only root may do; otherwise make
        # the same point with a file the current user does not own (the root-owned /etc/hostname
        # is not mode 0600, so the owner check must come first to be seen)
        path = Path("/etc/hostname")
    else:
        path = secret_file(tmp_path, "someone-elses-value")
        os.chown(path, 65534, 65534)
    line = refused(f"file:{path}")
    assert "is owned by uid" in line and f"hint: chown {os.geteuid()} {path}" in line


def test_file_that_is_not_a_regular_file_is_refused(tmp_path):
    directory = tmp_path / "a-dir"
    directory.mkdir(mode=0o700)
    assert "is not a regular file" in refused(f"file:{directory}")
    fifo = tmp_path / "a-fifo"
    os.mkfifo(fifo, 0o600)
    assert "is not a regular file" in refused(f"file:{fifo}")  # and it did not hang


def test_file_missing_empty_or_relative(tmp_path):
    missing = tmp_path / "nope"
    line = refused(f"file:{missing}")
    assert f"file:{missing}: no such file" in line and "keyshift secret keygen" in line
    assert "is empty" in refused(f"file:{secret_file(tmp_path, chr(10))}")
    assert "not a secret reference" in refused("file:relative/path")


# --- credential: ---------------------------------------------------------------------------


def test_credential_reference_reads_the_systemd_credentials_directory(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / "vault-token").write_text("credential-value-abcdef\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert secret_refs.resolve("credential:vault-token") == "credential-value-abcdef"
    line = refused("credential:other")
    assert "no credential 'other'" in line and "LoadCredential=other:" in line
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    line = refused("credential:vault-token")
    assert "$CREDENTIALS_DIRECTORY is not set" in line
    assert "LoadCredential=vault-token:" in line


# --- keyring: and what is written ------------------------------------------------------------


def test_keyring_reference_still_resolves():
    name = f"t-{uuid.uuid4().hex[:8]}"
    ref = secret_refs.store(f"keyshift-test/{name}", "keyring-value-12345")
    assert secret_refs.resolve(ref) == "keyring-value-12345"


@pytest.mark.parametrize(("name", "how"), [
    ("env:KS_X", "set KS_X in the environment"),
    ("file:/tmp/ks-x", "install -m 600"),
    ("credential:ks-x", "LoadCredential=ks-x:"),
])
def test_only_the_keyring_is_written(name, how):
    with pytest.raises(SecretError) as err:
        secret_refs.store(name, "a-value-that-stays-put")
    line = err.value.one_line()
    assert "keyshift does not write" in line and how in line
    assert not Path("/tmp/ks-x").exists()


# --- the inventory -------------------------------------------------------------------------

HEAD = """\
version: 1
sources:
  - {name: vault-prod, type: openbao, address: "https://vault.example.com:8200", token: TOKEN}
"""


@pytest.mark.parametrize("ref", ["keyring:keyshift/vault-token", "env:VAULT_TOKEN",
                                 "file:/etc/keyshift/vault-token", "file:~/.keyshift-token",
                                 "credential:vault-token"])
def test_every_kind_is_accepted_where_a_reference_goes(tmp_path, ref):
    loaded = loads_inventory(HEAD.replace("TOKEN", f'"{ref}"'), base_dir=tmp_path)
    assert loaded.source("vault-prod").token == ref  # type: ignore[union-attr]
    inv = Inventory.model_validate({"sources": [
        {"name": "aws", "type": "aws", "access_key_id": ref, "secret_access_key": ref}]})
    assert isinstance(inv.sources[0], AwsSource) and inv.sources[0].secret_access_key == ref


@pytest.mark.parametrize("literal", ["hunter2-but-longer", "file:relative/token", "env:",
                                     "credential:a/b", "keyring:no-name"])
def test_a_literal_is_refused_listing_the_forms(tmp_path, literal):
    with pytest.raises(ConfigError) as err:
        loads_inventory(HEAD.replace("TOKEN", f'"{literal}"'), base_dir=tmp_path)
    line = err.value.one_line()
    assert "sources[0].token" in line and "literal value" in line
    for form in ("keyring:<service>/<name>", "env:<NAME>", "file:<absolute path>",
                 "credential:<NAME>"):
        assert form in line.split("(hint")[0], line


def test_a_literal_in_a_field_not_named_like_a_secret_is_refused_too(tmp_path):
    # the schema's own check (not the secret-name heuristic of the loader)
    text = HEAD.replace("token: TOKEN", 'approle: {role_id: "plain-role", secret_id: "env:S"}')
    with pytest.raises(ConfigError) as err:
        loads_inventory(text, base_dir=tmp_path)
    line = err.value.one_line()
    assert "sources[0].approle.role_id" in line and "not a literal value" in line, line
    assert "env:<NAME>" in line and "credential:<NAME>" in line


def test_aws_key_references_come_in_pairs():
    with pytest.raises(ValueError, match="both access_key_id and secret_access_key"):
        Inventory.model_validate({"sources": [
            {"name": "aws", "type": "aws", "access_key_id": "env:AWS_KEY"}]})
    with pytest.raises(ValueError, match="not two of them"):
        Inventory.model_validate({"sources": [
            {"name": "aws", "type": "aws", "profile": "p", "access_key_id": "env:A",
             "secret_access_key": "env:B"}]})


def test_a_keyring_delivery_target_takes_only_a_keyring_entry():
    # a rotation writes there: an env: or file: "target" could never be written
    with pytest.raises(ValueError, match="expected a keyring entry"):
        Inventory.model_validate({"rotations": [{
            "name": "r", "issuer": {"type": "generated"},
            "targets": [{"type": "keyring", "ref": "env:SOME_VAR"}]}]})


# --- keyshift's own keys -------------------------------------------------------------------


def _key_file(tmp_path: Path) -> tuple[Path, str]:
    key = os.urandom(32).hex()
    return secret_file(tmp_path, key + "\n"), key


def test_own_keys_from_a_file_and_the_environment(tmp_path, monkeypatch):
    path, key = _key_file(tmp_path)
    monkeypatch.setenv(own_keys.FINGERPRINT_ENV, f"file:{path}")
    monkeypatch.setenv("KS_TEST_AUDIT_KEY", "ab" * 32)
    monkeypatch.setenv(own_keys.AUDIT_ENV, "env:KS_TEST_AUDIT_KEY")
    fingerprint = own_keys.fingerprint_key()
    audit = own_keys.audit_key()
    assert fingerprint.key == bytes.fromhex(key) and fingerprint.ref == f"file:{path}"
    assert audit.key == bytes.fromhex("ab" * 32)
    assert key not in repr(fingerprint) and fingerprint.key_id in repr(fingerprint)


def test_own_key_behind_a_reference_is_never_made_on_first_use(tmp_path, monkeypatch):
    missing = tmp_path / "fingerprint.key"
    monkeypatch.setenv(own_keys.FINGERPRINT_ENV, f"file:{missing}")
    with pytest.raises(SecretError) as err:
        own_keys.fingerprint_key()
    assert "keyshift secret keygen" in err.value.one_line() and not missing.exists()


@pytest.mark.parametrize(("value", "says"), [("not-hex-at-all", "expected hex"),
                                             ("00ff", "at least 16")])
def test_own_key_that_is_not_a_key(monkeypatch, value, says):
    monkeypatch.setenv("KS_TEST_BAD_KEY", value)
    monkeypatch.setenv(own_keys.AUDIT_ENV, "env:KS_TEST_BAD_KEY")
    with pytest.raises(SecretError) as err:
        own_keys.audit_key()
    assert says in err.value.one_line() and "$KEYSHIFT_AUDIT_KEY" in err.value.one_line()


def test_own_key_env_var_that_is_not_a_reference(monkeypatch):
    monkeypatch.setenv(own_keys.AUDIT_ENV, "deadbeef" * 8)  # the key itself, by mistake
    with pytest.raises(SecretError) as err:
        own_keys.audit_key()
    line = err.value.one_line()
    assert line.startswith("$KEYSHIFT_AUDIT_KEY: not a secret reference")
    assert "deadbeef" not in line.split("(hint")[0].replace("'" + "deadbeef" * 8 + "'", "")


# --- keyshift secret keygen ----------------------------------------------------------------


def keygen(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KEYSHIFT_HOME=str(tmp_path / "home"))
    return subprocess.run([KEYSHIFT, "--inventory", str(tmp_path / "none.yaml"), "secret",
                           "keygen", *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_keygen_makes_a_private_key_file_and_prints_only_its_id(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "fingerprint.key"
    old_umask = os.umask(0)
    try:
        proc = keygen(tmp_path, f"file:{path}")
    finally:
        os.umask(old_umask)
    assert proc.returncode == 0, proc.stderr
    key = path.read_text()
    assert key.endswith("\n") and len(bytes.fromhex(key.strip())) == 32
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    monkeypatch.setenv(own_keys.FINGERPRINT_ENV, f"file:{path}")
    made = own_keys.fingerprint_key()
    assert proc.stdout == f"file:{path} key id {made.key_id}\n"
    assert key.strip() not in proc.stdout + proc.stderr

    again = keygen(tmp_path, f"file:{path}")
    assert again.returncode != 0 and "already exists" in again.stderr and "--force" in again.stderr
    assert path.read_text() == key and "Traceback" not in again.stderr
    forced = keygen(tmp_path, f"file:{path}", "--force")
    assert forced.returncode == 0, forced.stderr
    assert path.read_text() != key and path.stat().st_mode & 0o777 == 0o600
    assert forced.stdout.split()[-1] != made.key_id
    assert [p.name for p in path.parent.iterdir()] == ["fingerprint.key"]  # no temp left


def test_keygen_into_the_keyring(tmp_path):
    name = f"keygen-{uuid.uuid4().hex[:8]}"
    ref = f"keyring:keyshift-test/{name}"
    try:
        proc = keygen(tmp_path, ref)
        assert proc.returncode == 0, proc.stderr
        stored = keyring.get_password("keyshift-test", name)
        assert stored and len(bytes.fromhex(stored)) == 32 and stored not in proc.stdout
        assert proc.stdout.startswith(f"{ref} key id ")
        again = keygen(tmp_path, ref)
        assert again.returncode != 0 and "already holds a value" in again.stderr
        assert keyring.get_password("keyshift-test", name) == stored
    finally:
        keyring.delete_password("keyshift-test", name)


@pytest.mark.parametrize(("ref", "how"), [
    ("env:KS_KEY", "export KS_KEY=$(python3 -c"),
    ("credential:ks-key", "LoadCredential=ks-key:"),
    ("not-a-ref", "use keyring:<service>/<name>, env:<NAME>"),
])
def test_keygen_says_how_to_set_what_it_cannot_write(tmp_path, ref, how):
    proc = keygen(tmp_path, ref)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and how in lines[0], proc.stderr


@pytest.mark.parametrize(("name", "how"), [
    ("env:KS_SET_ME", "set KS_SET_ME in the environment"),
    ("credential:ks-set-me", "LoadCredential=ks-set-me:"),
    ("file:/tmp/ks-set-me", "install -m 600 /dev/stdin /tmp/ks-set-me"),
])
def test_secret_set_refuses_what_it_cannot_write_and_says_how(tmp_path, name, how):
    env = dict(os.environ, KEYSHIFT_HOME=str(tmp_path / "home"))
    proc = subprocess.run([KEYSHIFT, "--inventory", str(tmp_path / "none.yaml"), "secret", "set",
                           name, "--stdin"], input="a-value-never-written", env=env,
                          capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "keyshift does not write" in lines[0] and how in lines[0]
    assert "a-value-never-written" not in proc.stdout + proc.stderr
    assert not Path("/tmp/ks-set-me").exists()


class _RefusesToOpen(keyring.backend.KeyringBackend):
    """The real Secret Service behind a fault the suite met once: the collection refused to
    open (InitError) a few times in a row, quickly or after a delay (a person dismissing an
    unlock prompt), then fine. Only the opening is faked; the values are the real keyring's."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, real: keyring.backend.KeyringBackend, refusals: int, delay: float) -> None:
        super().__init__()
        self.real, self.refusals, self.delay, self.calls = real, refusals, delay, 0

    def _open(self) -> None:
        import time

        self.calls += 1
        if self.calls <= self.refusals:
            time.sleep(self.delay)
            raise keyring.errors.InitError("Failed to unlock the collection!")

    def get_password(self, service: str, username: str) -> str | None:
        self._open()
        return self.real.get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._open()
        self.real.set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self._open()
        self.real.delete_password(service, username)


def test_a_keyring_that_refuses_to_open_at_once_is_asked_again_not_a_slow_refusal() -> None:
    real = keyring.get_keyring()
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    value = f"v-{uuid.uuid4().hex}"
    try:
        quick = _RefusesToOpen(real, refusals=2, delay=0)
        keyring.set_keyring(quick)
        secret_refs.put("keyshift-test", name, value)  # refused twice, then written
        assert quick.calls == 3
        quick.calls = 0
        assert secret_refs.get("keyshift-test", name) == value
        assert quick.calls == 3
        stubborn = _RefusesToOpen(real, refusals=5, delay=0)
        keyring.set_keyring(stubborn)
        with pytest.raises(SecretError, match="keyring is unavailable"):
            secret_refs.get("keyshift-test", name)
        assert stubborn.calls == 3  # three tries, then said
        person = _RefusesToOpen(real, refusals=1, delay=1.2)
        keyring.set_keyring(person)
        with pytest.raises(SecretError):
            secret_refs.get("keyshift-test", name)
        assert person.calls == 1  # a dismissed prompt is not put up again
    finally:
        keyring.set_keyring(real)
        secret_refs.delete("keyshift-test", name)


class _Overlaps(keyring.backend.KeyringBackend):
    """The real keyring, counting how many calls are in it at once."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, real: keyring.backend.KeyringBackend) -> None:
        import threading

        super().__init__()
        self.real, self.inside, self.most = real, 0, 0
        self.guard = threading.Lock()

    def get_password(self, service: str, username: str) -> str | None:
        import time

        with self.guard:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            time.sleep(0.01)  # long enough for the other threads to arrive
            return self.real.get_password(service, username)
        finally:
            with self.guard:
                self.inside -= 1

    def set_password(self, service: str, username: str, password: str) -> None:
        self.real.set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self.real.delete_password(service, username)


def test_keyring_calls_from_many_threads_reach_the_keyring_one_at_a_time() -> None:
    """Six threads writing and reading at once made gnome-keyring report its collection
    locked and then die (a stress run of a minute): keyshift's threads (the parallel sync,
    the engine) reach it one call at a time, and every answer is still right."""
    from concurrent.futures import ThreadPoolExecutor

    real = keyring.get_keyring()
    name = f"serial-{uuid.uuid4().hex[:8]}"
    secret_refs.put("keyshift-test", name, "v")
    counting = _Overlaps(real)
    try:
        keyring.set_keyring(counting)
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda _i: secret_refs.get("keyshift-test", name), range(24)))
        assert got == ["v"] * 24
        assert counting.most == 1
    finally:
        keyring.set_keyring(real)
        secret_refs.delete("keyshift-test", name)
