"""The sandbox's moto server: ``python -m console.sandbox_moto -H 127.0.0.1 -p <port>``.

moto's own server (``moto.server.main``) with one fix, applied before it starts: moto 5.x
accepts a signature made with an access key whose status is ``Inactive``, where AWS answers
403 InvalidClientTokenId. Without the fix a deactivated key keeps working and a revoke step
cannot be verified against the sandbox. Run only by ``console.sandbox`` (its own process).
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


def main() -> None:
    try:
        refuse_inactive_keys()
    except (ImportError, AttributeError) as exc:
        # refusing to run is better than a sandbox where revoked keys silently still work
        print(f"keyshift: cannot patch moto's access-key check: {exc}", file=sys.stderr)
        sys.exit(3)
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
