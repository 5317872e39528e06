"""What the engine gives issuers and targets: clients, hooks, paths, and the run's values.

``Clients`` is shared by every run of one engine (one hvac client per Vault source, boto3
clients per AWS source, service and region). ``RunContext`` is one run's view: its id, the
person at hand (if any), the ``ValueScope`` holding the values it handles, and the crash-test
checkpoints.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from console.crashpoints import crash_point
from console.errors import KeyshiftError, RotationError
from console.fingerprint import fingerprint
from console.redaction import ValueScope
from rotators.base import HookVerdict, Interaction, RotatorError
from rotators.values import SecretValue

if TYPE_CHECKING:
    from console.config import LoadedInventory

log = logging.getLogger(__name__)


class Clients:
    """Provider clients for the inventory's sources, built once per engine."""

    def __init__(self, loaded: LoadedInventory) -> None:
        self.loaded = loaded
        self._lock = threading.Lock()
        self._vault: dict[str, Any] = {}
        self._aws: dict[tuple[str, str, str | None], Any] = {}
        self._http: Any = None

    def vault(self, source: str) -> Any:
        with self._lock:
            if source not in self._vault:
                from console.connections import hvac_client, vault_connection

                cfg = self.loaded.source(source)
                if cfg.type not in ("vault", "openbao"):
                    raise RotationError(f"source {source!r} is {cfg.type}, not vault/openbao")
                self._vault[source] = hvac_client(vault_connection(cfg))  # type: ignore[arg-type]
            return self._vault[source]

    def _aws_connection(self, source: str) -> Any:
        from console.connections import aws_connection

        cfg = self.loaded.source(source)
        if cfg.type != "aws":
            raise RotationError(f"source {source!r} is {cfg.type}, not aws")
        return aws_connection(cfg)  # type: ignore[arg-type]

    def aws(self, source: str, service: str, region: str | None = None) -> Any:
        key = (source, service, region)
        with self._lock:
            if key not in self._aws:
                import botocore.config

                # the engine does its own backoff: botocore's retries would hide a 503 in it
                config = botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"})
                self._aws[key] = self._aws_connection(source).client(service, region, config)
            return self._aws[key]

    def aws_as(self, source: str, service: str, key_id: str, secret: str) -> Any:
        import botocore.config

        config = botocore.config.Config(retries={"max_attempts": 1})
        return self._aws_connection(source).client_as(service, key_id, secret, config)

    def http(self) -> Any:
        with self._lock:
            if self._http is None:
                import requests

                self._http = requests.Session()
            return self._http

    def provider(self, name: str) -> dict[str, Any]:
        declared = next((p for p in self.loaded.inventory.providers if p.name == name), None)
        if declared is None:
            return {"console_url": None, "verify": None}
        hook = declared.verify.model_dump(mode="json") if declared.verify else None
        console = declared.console_url
        if declared.sandbox:
            from console.sandbox import provider_base

            base = provider_base(name)
            if hook:
                hook["url"] = base + (urlparse(hook["url"]).path or "/")
            console = f"{base}/console"
        return {"console_url": console, "verify": hook}


class RunContext:
    """One run's context (rotators.base.RunContext)."""

    def __init__(
        self,
        clients: Clients,
        run_id: str,
        clock: Callable[[], datetime],
        interaction: Interaction | None,
        scope: ValueScope,
    ) -> None:
        self.clients = clients
        self.run_id = run_id
        self.interaction = interaction
        self.scope = scope
        self._clock = clock
        self.step = ""

    def now(self) -> datetime:
        return self._clock()

    def vault_client(self, source: str) -> Any:
        try:
            return self.clients.vault(source)
        except KeyshiftError as exc:
            raise RotatorError(exc.one_line(), retryable=False) from None

    def aws_client(self, source: str, service: str, region: str | None = None) -> Any:
        try:
            return self.clients.aws(source, service, region)
        except KeyshiftError as exc:
            raise RotatorError(exc.one_line(), retryable=False) from None

    def aws_client_as(
        self, source: str, service: str, key_id: SecretValue, secret: SecretValue
    ) -> Any:
        return self.clients.aws_as(source, service, key_id.reveal(), secret.reveal())

    def fingerprint(self, value: SecretValue | str) -> str:
        return fingerprint(value)

    def keep(self, value: str) -> SecretValue:
        self.scope.add(value)
        return SecretValue(value)

    def generate(self, rule: Any) -> str:
        """For rotators written against the first protocol: a value by a generator rule."""
        from rotators.values import generate

        value = generate(int(rule.length), str(rule.alphabet), str(getattr(rule, "prefix", "")))
        self.scope.add(value)
        return value.reveal()

    def checkpoint(self, point: str) -> None:
        crash_point(f"{self.step}@{point}")

    def path(self, relative: str) -> Path:
        return self.clients.loaded.resolve_path(relative)

    def provider(self, name: str) -> Mapping[str, Any]:
        return self.clients.provider(name)

    def check_hook(self, hook: Mapping[str, Any], value: SecretValue) -> HookVerdict:
        import requests

        url = str(hook["url"])
        session = self.clients.http()
        headers = {str(hook["header"]): str(hook["format"]).replace("{value}", value.reveal())}
        try:
            response = session.request(
                str(hook.get("method") or "GET"),
                url,
                headers=headers,
                timeout=float(hook.get("timeout_seconds") or 10),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise RotatorError(
                f"verify hook {urlparse(url).netloc}: unreachable ({type(exc).__name__})",
                retryable=True,
            ) from None
        status = response.status_code
        ok_field = hook.get("json_ok")
        if status in hook.get("refused", []):
            return "refused"
        if status in hook.get("valid", []):
            if ok_field:
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                if not isinstance(body, dict) or body.get(ok_field) is not True:
                    return "refused"
            return "valid"
        if status == 429 or status >= 500:
            raise RotatorError(f"verify hook answered HTTP {status}", retryable=True)
        raise RotatorError(f"verify hook answered HTTP {status}, neither valid nor refused")
