"""keyshift's own secrets (console/secret_refs.py), fingerprints (console/fingerprint.py),
scoped redaction (console/redaction.py) and in-memory values (rotators/values.py), against the
real Secret Service (gnome-keyring on a private D-Bus)."""

from __future__ import annotations

import json
import logging
import pickle
import uuid

import keyring
import pytest

from console import fingerprint as fp
from console import own_keys, secret_refs
from console.errors import SecretError
from console.redaction import OWN, ValueScope, install_log_redaction, redact_active
from rotators.values import SecretValue, canonical_value, entropy_bits, generate, min_length

FINGERPRINT_ENTRY = secret_refs.parse_ref(own_keys.FINGERPRINT_DEFAULT)


@pytest.fixture(autouse=True)
def _fresh_installation_key():
    fp._reset_for_tests()
    yield
    fp._reset_for_tests()


def test_the_backend_is_the_real_secret_service():
    backend = keyring.get_keyring()
    assert "SecretService" in type(backend).__module__ + type(backend).__name__


def test_reference_round_trip_through_the_keyring():
    name = f"t-{uuid.uuid4().hex[:8]}"
    ref = secret_refs.store(f"keyshift-test/{name}", "round-trip-value-123")
    assert ref == f"keyring:keyshift-test/{name}"
    assert secret_refs.resolve(ref) == "round-trip-value-123"
    # keyshift's own secret: kept out of log lines from then on
    assert "round-trip-value-123" in OWN
    assert redact_active("x round-trip-value-123 y") == "x [redacted] y"


def test_an_agents_keyring_entry_is_not_taken_for_keyshifts_own():
    name = f"t-{uuid.uuid4().hex[:8]}"
    secret_refs.put("keyshift-test", name, "agent-entry-value-456", own=False)
    assert secret_refs.get("keyshift-test", name, own=False) == "agent-entry-value-456"
    assert "agent-entry-value-456" not in OWN


@pytest.mark.parametrize(
    "bad", ["keyring:", "keyring:svc", "keyring:svc/", "vault:svc/name", "plain", "keyring: a/b"]
)
def test_malformed_references_are_refused(bad):
    with pytest.raises(SecretError) as err:
        secret_refs.resolve(bad)
    assert "keyring:<service>/<name>" in err.value.one_line()


def test_missing_reference_names_the_ref_and_how_to_fix_it():
    ref = f"keyring:keyshift-test/absent-{uuid.uuid4().hex[:6]}"
    with pytest.raises(SecretError) as err:
        secret_refs.resolve(ref)
    line = err.value.one_line()
    assert ref in line and "keyshift secret set" in line


def test_fingerprint_key_is_created_once_and_kept_in_the_keyring():
    first = fp.fingerprint("same value")
    stored = keyring.get_password(*FINGERPRINT_ENTRY)
    assert stored and len(bytes.fromhex(stored)) == 32
    fp._reset_for_tests()  # a new process: the key comes back from the keyring
    assert fp.fingerprint("same value") == first
    assert fp.fingerprint(SecretValue("same value")) == first
    assert fp.fingerprint("other value") != first
    assert first.startswith("hmac-sha256:") and "same value" not in first


def test_fingerprint_depends_on_the_installation_key():
    before = fp.fingerprint("keyed value")
    keyring.set_password(*FINGERPRINT_ENTRY, "00" * 32)
    fp._reset_for_tests()
    try:
        assert fp.fingerprint("keyed value") != before  # not a plain hash of the value
    finally:
        keyring.delete_password(*FINGERPRINT_ENTRY)


def test_fingerprinting_a_value_does_not_keep_it():
    fp.fingerprint("vault-sandbox-word")
    line = "vault-sandbox-word: 29 credentials"
    assert redact_active(line) == line


def test_a_scope_redacts_its_values_in_logs_only_while_it_is_open(caplog):
    logger = logging.getLogger("keyshift.test.redact")
    install_log_redaction(logger)
    with caplog.at_level(logging.INFO, logger="keyshift.test.redact"):
        with ValueScope("run") as scope:
            scope.add(SecretValue("canary-log-value-9f8e7d"))
            logger.info("token is %s", "canary-log-value-9f8e7d")
            logger.warning("inline canary-log-value-9f8e7d too")
            assert scope.redact("x canary-log-value-9f8e7d") == "x [redacted]"
        logger.info("after: canary-log-value-9f8e7d")
    lines = caplog.text.splitlines()
    assert "canary-log-value-9f8e7d" not in "\n".join(lines[:2])
    assert caplog.text.count("[redacted]") == 2
    # the scope ended: the value is forgotten, not kept for the life of the process
    assert "after: canary-log-value-9f8e7d" in lines[2]


def test_a_logged_traceback_is_scrubbed_too(tmp_path):
    """log.exception prints the exception's own text as the traceback's last line; a value
    in it must be scrubbed like the message (a handler formats after the filter ran)."""
    logger = logging.getLogger("keyshift.test.redact-exc")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "exc.log")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    install_log_redaction(logger)
    try:
        with ValueScope("run") as scope:
            scope.add(SecretValue("canary-exc-value-5a4b3c"))
            try:
                raise RuntimeError("the server said canary-exc-value-5a4b3c is wrong")
            except RuntimeError:
                logger.exception("step failed")
    finally:
        handler.close()
        logger.removeHandler(handler)
    text = (tmp_path / "exc.log").read_text()
    assert "canary-exc-value-5a4b3c" not in text
    assert "RuntimeError: the server said [redacted] is wrong" in text  # still there, scrubbed
    assert "Traceback" in text


def test_short_strings_are_never_redacted():
    with ValueScope() as scope:
        scope.add("abcdefg")  # shorter than MIN_REDACT_LEN: redacting it would mangle text
        assert scope.redact("abcdefg def") == "abcdefg def"


def test_a_secret_value_never_prints_compares_or_pickles_as_text():
    value = SecretValue("canary-sv-1234567890")
    for text in (str(value), repr(value), f"{value}", f"{value!r}", json.dumps({"v": str(value)})):
        assert "canary-sv" not in text
    assert value.reveal() == "canary-sv-1234567890"
    assert value == SecretValue("canary-sv-1234567890")
    assert value != "canary-sv-1234567890"
    with pytest.raises(TypeError):
        pickle.dumps(value)


def test_generated_values_follow_the_rule():
    value = generate(32, "hex", prefix="sk-test-").reveal()
    assert value.startswith("sk-test-") and len(value) == 40
    assert set(value[8:]) <= set("0123456789abcdef")
    assert generate(32, "hex") != generate(32, "hex")


def test_entropy_figures():
    assert entropy_bits(32, "hex") == 128
    assert min_length("hex") == 32
    assert min_length("alnum") == 22  # 22 * log2(62) = 130.99 bits
    assert entropy_bits(21, "alnum") < 128 <= entropy_bits(22, "alnum")


def test_canonical_value_of_one_key_is_the_value_itself():
    assert canonical_value({"value": "abc"}) == "abc"
    assert canonical_value({"value": SecretValue("abc")}) == "abc"
    assert canonical_value({"b": "2", "a": "1"}) == '{"a":"1","b":"2"}'
