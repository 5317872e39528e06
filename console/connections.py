"""Connections to the inventory's sources, in one place: given a source, its address and
credentials, and ready clients with one set of timeouts and retries.

- Vault / OpenBao: the address (an ``http://`` address that is not loopback is refused unless
  the source says ``insecure: true``: the token would cross the network in clear), the
  namespace, and the token: from the source's ``token`` reference, an AppRole login with its
  ``approle`` references, or ``BAO_TOKEN`` / ``VAULT_TOKEN``.
- AWS: a boto3 session per source. A ``profile`` stays a profile: botocore refreshes SSO and
  assume-role credentials itself when they expire, so a long console session does not outlive
  them (they are never copied out as fixed keys). A fixed key is given by reference
  (``access_key_id`` / ``secret_access_key``), for a server with no profile.
- References are any kind ``console.secret_refs`` reads: ``keyring:``, ``env:``, ``file:``,
  ``credential:``.
- ``sandbox: true`` sources take their settings from the running sandbox
  (``console.sandbox``): the sandbox is one way to get a source's settings, no more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from console import secret_refs
from console.errors import SourceError
from console.redaction import OWN

if TYPE_CHECKING:
    import boto3
    import hvac
    import requests

    from console.inventory import AwsSource, VaultSource

VAULT_TIMEOUT = 15  # seconds for one Vault request
POOL_SIZE = 16  # connections kept per Vault client: keyshift's threads reuse them
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class VaultConnection:
    source: str
    address: str
    token: str
    namespace: str | None = None


def check_vault_address(name: str, address: str, insecure: bool = False) -> None:
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SourceError(
            f"vault source {name!r}: {address!r} is not an http(s) address",
            hint="write it as https://host:8200",
        )
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK and not insecure:
        raise SourceError(
            f"vault source {name!r}: {address} is plain http to another host; keyshift's "
            "token would cross the network in clear",
            hint="use https://, or set insecure: true on the source if you accept that",
        )


def vault_connection(source: VaultSource) -> VaultConnection:
    """The source's address and token (logging in with AppRole when that is how it signs in)."""
    if source.sandbox:
        from console.sandbox import sandbox_vault

        address, token = sandbox_vault()
        return VaultConnection(source.name, address, token, source.namespace)
    address = source.address or ""
    check_vault_address(source.name, address, source.insecure)
    if source.token:
        token = secret_refs.resolve(source.token)
    elif source.approle:
        token = _approle_login(source, address)
    else:
        token = os.environ.get("BAO_TOKEN") or os.environ.get("VAULT_TOKEN") or ""
        if not token:
            raise SourceError(
                f"vault source {source.name!r} has no credentials",
                hint="give it token: <ref> (keyring:<service>/<name>, env:NAME, file:PATH or "
                "credential:NAME), or approle: {role_id: <ref>, secret_id: <ref>}",
            )
        OWN.add(token)
    return VaultConnection(source.name, address, token, source.namespace)


def http_session(address: str) -> requests.Session:
    """A session with a connection pool as wide as keyshift's thread pools; loopback (the
    sandbox) never goes through a proxy from the environment."""
    import requests
    import requests.adapters

    session = requests.Session()
    if urlparse(address).hostname in LOOPBACK:
        session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=POOL_SIZE)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def hvac_client(conn: VaultConnection) -> hvac.Client:
    import hvac

    return hvac.Client(
        url=conn.address,
        token=conn.token,
        namespace=conn.namespace,
        timeout=VAULT_TIMEOUT,
        session=http_session(conn.address),
    )


def _approle_login(source: VaultSource, address: str) -> str:
    import hvac
    import hvac.exceptions
    import requests

    refs = source.approle or {}
    if "role_id" not in refs or "secret_id" not in refs:
        raise SourceError(
            f"vault source {source.name!r}: approle needs role_id and secret_id references"
        )
    role_id = secret_refs.resolve(refs["role_id"])
    secret_id = secret_refs.resolve(refs["secret_id"])
    client = hvac.Client(
        url=address, namespace=source.namespace, timeout=VAULT_TIMEOUT,
        session=http_session(address),
    )
    try:
        client.auth.approle.login(role_id, secret_id, mount_point=source.approle_mount)
    except hvac.exceptions.VaultError as exc:
        raise SourceError(
            f"vault source {source.name!r}: AppRole login refused ({type(exc).__name__})"
        ) from None
    except requests.RequestException as exc:
        raise SourceError(
            f"vault source {source.name!r}: {address} unreachable ({type(exc).__name__})"
        ) from None
    token = str(client.token)
    OWN.add(token)
    return token


# --- AWS ----------------------------------------------------------------------------------


@dataclass
class AwsConnection:
    source: str
    session: boto3.Session
    endpoint_url: str | None
    region: str

    def client(self, service: str, region: str | None = None, config: Any = None) -> Any:
        kwargs: dict[str, Any] = {"region_name": region or self.region}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if config is not None:
            kwargs["config"] = config
        return self.session.client(service, **kwargs)

    def client_as(self, service: str, key_id: str, secret: str, config: Any = None) -> Any:
        """A client signing with another key (a candidate key being verified)."""
        import boto3

        kwargs: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if config is not None:
            kwargs["config"] = config
        return boto3.client(
            service, aws_access_key_id=key_id, aws_secret_access_key=secret, **kwargs
        )


def aws_connection(source: AwsSource) -> AwsConnection:
    import boto3
    import botocore.exceptions

    if source.sandbox:
        from console.sandbox import sandbox_aws

        endpoint, region, key_id, secret = sandbox_aws()
        session = boto3.Session(
            aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region
        )
        if source.role_arn:
            session = _assumed(source, session, endpoint, region)
        return AwsConnection(source.name, session, endpoint, region)
    region = source.regions[0] if source.regions else DEFAULT_REGION
    try:
        if source.access_key_id and source.secret_access_key:
            # a fixed key by reference (resolve keeps both out of every log line)
            session = boto3.Session(
                aws_access_key_id=secret_refs.resolve(source.access_key_id),
                aws_secret_access_key=secret_refs.resolve(source.secret_access_key),
                region_name=region,
            )
        elif source.profile:
            session = boto3.Session(profile_name=source.profile, region_name=region)
        else:
            session = boto3.Session(region_name=region)
    except botocore.exceptions.BotoCoreError as exc:
        raise SourceError(
            f"aws source {source.name!r}: profile {source.profile!r} unusable "
            f"({type(exc).__name__})",
            hint="check the profile in ~/.aws/config",
        ) from None
    if source.role_arn:
        session = _assumed(source, session, source.endpoint_url, region)
    return AwsConnection(source.name, session, source.endpoint_url, region)


def _assumed(source: AwsSource, base: Any, endpoint: str | None, region: str) -> Any:
    """A session that reads the account as ``source.role_arn``: assumed with ``base``'s
    credentials, and assumed again by botocore when the role's credentials near their end,
    so a long console session does not outlive them."""
    import boto3
    import botocore.credentials
    import botocore.exceptions
    import botocore.session

    sts = base.client("sts", region_name=region, endpoint_url=endpoint)
    ask: dict[str, Any] = {"RoleArn": source.role_arn, "RoleSessionName": f"keyshift-{source.name}"}
    if source.external_id:
        ask["ExternalId"] = source.external_id

    def fetch() -> dict[str, str]:
        try:
            got = sts.assume_role(**ask)["Credentials"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise SourceError(
                f"aws source {source.name!r}: cannot assume {source.role_arn} ({code})",
                hint="the role's trust policy must allow the profile's principal (and the "
                "external id, when one is set)",
            ) from None
        return {
            "access_key": got["AccessKeyId"],
            "secret_key": got["SecretAccessKey"],
            "token": got["SessionToken"],
            "expiry_time": got["Expiration"].isoformat(),
        }

    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    inner = botocore.session.get_session()
    inner._credentials = credentials  # botocore has no public setter for refreshing creds
    return boto3.Session(botocore_session=inner, region_name=region)
