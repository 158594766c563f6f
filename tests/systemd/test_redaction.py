"""Secrets never reach a log line: the redaction filter and the journal's field selection."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import systemd.journal as sd_journal

from device import journal
from device.config import known_api_keys, parse_settings
from device.daemon import credentials
from device.journal import MASK, Redactor, protect, send_fields, setup_logging, under_systemd

KEY = "AIzaSyD-0123456789abcdefghijklmnopqrstu"  # Google key shape, not a real one


def reject() -> None:
    raise ValueError("rejected key=my-own-secret-key")


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a redacting stderr-style handler into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(journal.STDERR_FORMAT))
    handler.addFilter(Redactor(["my-own-secret-key"]))
    logger = logging.getLogger("tests.redaction")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("connecting with my-own-secret-key", "my-own-secret-key"),
        ("GET /ws?key=abc123def456&alt=json", "abc123def456"),
        ("headers {'x-goog-api-key': 'zzzzzzzz1'}", "zzzzzzzz1"),
        ("x-goog-api-key: zzzzzzzz2", "zzzzzzzz2"),
        ("Authorization: Bearer ya29.tokentoken", "ya29.tokentoken"),
        ('{"access_token": "tok-tok-tok"}', "tok-tok-tok"),
        ("env GEMINI_API_KEY=sekrit-value", "sekrit-value"),
        (f"a pasted key {KEY} in a message", KEY),
        ("password=hunter2hunter2", "hunter2hunter2"),
    ],
)
def test_secrets_are_masked(text: str, hidden: str) -> None:
    masked = Redactor(["my-own-secret-key"]).redact(text)
    assert hidden not in masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "x.toml: live.api_key: the API key does not belong in the config file",
        "no API key: set GEMINI_API_KEY or give systemd a credential named 'gemini-api-key'",
        "input tokens: 120, output tokens: 40",
        "tool set_output answered in 3 ms",
    ],
)
def test_ordinary_lines_are_left_alone(text: str) -> None:
    assert Redactor(["my-own-secret-key"]).redact(text) == text


def test_short_secrets_are_not_used_as_patterns() -> None:
    assert Redactor(["key"]).redact("the key is here") == "the key is here"


def test_arguments_fields_and_tracebacks_are_masked(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.info("sent %s", "my-own-secret-key", extra={"CLOSE_REASON": "bad my-own-secret-key"})
    try:
        reject()
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    assert "my-own-secret-key" not in text
    assert f"sent {MASK}" in text
    assert f"ValueError: rejected key={MASK}" in text


def test_a_broken_format_does_not_leak_its_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.info("one %s two %s", "my-own-secret-key")  # noqa: PLE1206 - on purpose
    assert "my-own-secret-key" not in out.getvalue()
    assert "log arguments dropped" in out.getvalue()


def test_the_record_fields_are_masked_for_the_journal() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("sekrit-value",), None)
    record.CLOSE_REASON = "token=sekrit-value"
    Redactor(["sekrit-value"]).filter(record)
    assert record.getMessage() == f"hello {MASK}"
    assert vars(record)["CLOSE_REASON"] == f"token={MASK}"


def test_only_journal_fields_with_values_are_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        sd_journal, "send", lambda message, **fields: sent.append((message, fields))
    )
    send_fields(
        "closed",
        PRIORITY="4",
        CLOSE_CODE=1008,
        CLOSE_REASON=None,
        msg="closed",
        levelname="WARNING",
        EXCEPTION_INFO="(<class ...>, key=raw)",
    )
    assert sent == [("closed", {"PRIORITY": "4", "CLOSE_CODE": 1008})]


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without the test runner's handlers (setup_logging, like basicConfig,
    leaves a configured root logger alone), restored afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    for handler in saved:
        root.removeHandler(handler)
    try:
        yield root
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_setup_logging_masks_the_configured_key(tmp_path: Path) -> None:
    (tmp_path / "gemini-api-key").write_text("credential-file-key\n")
    with bare_root() as root:
        environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
        setup_logging(False, environ, known_api_keys(environ))
        [handler] = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("credential-file-key",), None)
    assert handler.filter(record)
    assert record.getMessage() == MASK


def test_setup_logging_uses_the_journal_under_systemd() -> None:
    with bare_root() as root:
        setup_logging(True, {"INVOCATION_ID": "0123"})
        [handler] = root.handlers
        level = root.level
    assert isinstance(handler, sd_journal.JournalHandler)
    assert level == logging.DEBUG


def test_the_journal_is_chosen_only_for_a_service(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        stat = os.fstat(stream.fileno())
        ours = f"{stat.st_dev}:{stat.st_ino}"
        assert under_systemd({"JOURNAL_STREAM": ours}, stream.fileno())
        # A terminal inside a service's session inherits both variables, not the stream.
        inherited = {"JOURNAL_STREAM": "1:2", "INVOCATION_ID": "0123"}
        assert not under_systemd(inherited, stream.fileno())
    assert under_systemd({"INVOCATION_ID": "0123"})
    assert not under_systemd({})


def test_credentials_read_after_set_up_are_masked_too() -> None:
    with bare_root() as root:
        setup_logging(False, {})
        protect(["broker-password-1", None, "  "])
        [handler] = root.handlers
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "login %s", ("with broker-password-1",), None
    )
    assert handler.filter(record)
    assert record.getMessage() == f"login with {MASK}"


def test_the_daemon_hands_the_mqtt_password_and_ha_token_to_the_redactor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mqtt-password").write_text("broker-password-1\n")
    (tmp_path / "ha-token").write_text("long-lived-token-2\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = parse_settings(
        {
            "mqtt": {"host": "127.0.0.1", "username": "voice"},
            "home_assistant": {"url": "http://127.0.0.1:8123"},
        },
        tmp_path / "config.toml",
    )
    assert credentials(settings) == ["broker-password-1", "long-lived-token-2"]
