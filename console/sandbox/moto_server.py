"""The sandbox's moto server: ``python -m console.sandbox.moto_server -H 127.0.0.1 -p <port>``.

moto's own server (``moto.server.main``) with two fixes, applied before it starts, where moto
5.x behaves unlike AWS in ways rotation depends on:

- it accepts a signature made with an access key whose status is ``Inactive``, where AWS
  answers 403 InvalidClientTokenId: a deactivated key would keep working and a revoke step
  could not be verified against the sandbox;
- ``UpdateSecretVersionStage`` moving ``AWSCURRENT`` leaves GetSecretValue without a stage
  serving the old version, where AWS serves the version labelled AWSCURRENT: a consumer would
  keep reading the old value after a Secrets Manager rotation promoted the new one.

If either cannot be applied the server refuses to start. Run only by ``console.sandbox``.
"""

from __future__ import annotations

import sys
from typing import Any


def refuse_inactive_keys() -> None:
    from moto.iam import access_control

    original = access_control.IAMUserAccessKey.__init__

    def __init__(
        self: Any, account_id: str, partition: str, access_key_id: str, headers: dict[str, str]
    ) -> None:
        original(self, account_id, partition, access_key_id, headers)
        for user in self.backend.list_users("/", None, None):
            for key in user.access_keys:
                if key.access_key_id == access_key_id and key.status != "Active":
                    # reported by moto as InvalidClientTokenId, as AWS does for inactive keys
                    raise access_control.CreateAccessKeyFailure(reason="InvalidId")

    access_control.IAMUserAccessKey.__init__ = __init__  # type: ignore[method-assign]


def current_follows_its_label() -> None:
    from moto.secretsmanager import models

    backend_cls = models.SecretsManagerBackend
    original = backend_cls.update_secret_version_stage

    def update_secret_version_stage(
        self: Any,
        secret_id: str,
        version_stage: str,
        remove_from_version_id: str,
        move_to_version_id: str,
    ) -> tuple[str, str]:
        out = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            # GetSecretValue with no stage serves AWSCURRENT, as in AWS
            self.secrets[secret_id].set_default_version_id(move_to_version_id)
        return out

    backend_cls.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]


def main() -> None:
    try:
        refuse_inactive_keys()
        current_follows_its_label()
    except (ImportError, AttributeError) as exc:
        # refusing to run is better than a sandbox that silently behaves unlike AWS
        print(f"keyshift: cannot patch moto: {exc}", file=sys.stderr)
        sys.exit(3)
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
