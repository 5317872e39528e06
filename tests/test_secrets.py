"""console/secrets.py against the real Secret Service (gnome-keyring on a private D-Bus)."""

from __future__ import annotations

import logging
import uuid

import keyring
import pytest

from console import secrets
from console.errors import SecretError


@pytest.fixture(autouse=True)
def _fresh_installation_key():
    secrets._reset_for_tests()
    yield
    secrets._reset_for_tests()


def test_the_backend_is_the_real_secret_service():
    backend = keyring.get_keyring()
    assert "SecretService" in type(backend).__module__ + type(backend).__name__


def test_reference_round_trip_through_the_keyring():
    name = f"t-{uuid.uuid4().hex[:8]}"
    ref = secrets.store(f"keyshift-test/{name}", "round-trip-value-123")
    assert ref == f"keyring:keyshift-test/{name}"
    assert secrets.resolve(ref) == "round-trip-value-123"
    # a value read from the keyring is redacted from then on
    assert secrets.redact("x round-trip-value-123 y") == "x [redacted] y"


@pytest.mark.parametrize(
    "bad", ["keyring:", "keyring:svc", "keyring:svc/", "vault:svc/name", "plain", "keyring: a/b"]
)
def test_malformed_references_are_refused(bad):
    with pytest.raises(SecretError) as err:
        secrets.resolve(bad)
    assert "keyring:<service>/<name>" in err.value.one_line()


def test_missing_reference_names_the_ref_and_how_to_fix_it():
    ref = f"keyring:keyshift-test/absent-{uuid.uuid4().hex[:6]}"
    with pytest.raises(SecretError) as err:
        secrets.resolve(ref)
    line = err.value.one_line()
    assert ref in line and "keyshift secret set" in line


def test_fingerprint_key_is_created_once_and_kept_in_the_keyring():
    first = secrets.fingerprint("same value")
    stored = keyring.get_password(secrets.INSTALLATION_SERVICE, secrets.INSTALLATION_KEY_NAME)
    assert stored and len(bytes.fromhex(stored)) == 32
    secrets._reset_for_tests()  # a new process: the key comes back from the keyring
    assert secrets.fingerprint("same value") == first
    assert secrets.fingerprint("other value") != first
    assert first.startswith("hmac-sha256:") and "same value" not in first


def test_fingerprint_depends_on_the_installation_key():
    before = secrets.fingerprint("keyed value")
    keyring.set_password(secrets.INSTALLATION_SERVICE, secrets.INSTALLATION_KEY_NAME, "00" * 32)
    secrets._reset_for_tests()
    try:
        assert secrets.fingerprint("keyed value") != before  # not a plain hash of the value
    finally:
        keyring.delete_password(secrets.INSTALLATION_SERVICE, secrets.INSTALLATION_KEY_NAME)


def test_logging_filter_redacts_every_value_read(caplog):
    secrets.remember("canary-log-value-9f8e7d")
    logger = logging.getLogger("keyshift.test.redact")
    secrets.install_log_redaction(logger)
    with caplog.at_level(logging.INFO, logger="keyshift.test.redact"):
        logger.info("token is %s", "canary-log-value-9f8e7d")
        logger.warning("inline canary-log-value-9f8e7d too")
    text = caplog.text
    assert "canary-log-value-9f8e7d" not in text
    assert text.count("[redacted]") == 2


def test_generated_values_follow_the_rule_and_are_remembered():
    value = secrets.generate(32, "hex", prefix="sk-test-")
    assert value.startswith("sk-test-") and len(value) == 40
    assert set(value[8:]) <= set("0123456789abcdef")
    assert value not in secrets.redact(f"the value {value}")


def test_short_strings_are_not_redacted_everywhere():
    secrets.remember("abc")  # too short to be a secret; redacting it would mangle text
    assert secrets.redact("abc def") == "abc def"
