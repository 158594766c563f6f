"""Logging set-up: journald with structured fields under systemd, plain stderr otherwise.

Records carry their structured fields as upper-case ``extra=`` attributes (``CLOSE_CODE``,
``TOOL_NAME``, ``TOOL_MS``, ...). Under systemd they become journal fields, so an operator can
filter on them (``journalctl -u pi-live-voice CLOSE_CODE=1008``). Every record, on either path,
first goes through :class:`Redactor`, so the API key never reaches a log line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import systemd.journal as sd_journal

IDENTIFIER = "pi-live-voice"
MASK = "[redacted]"
# Shorter "secrets" would mask ordinary words all over the log; real keys are far longer.
MIN_SECRET_CHARS = 8
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A valid journal field name; the journal drops the others, so they are not sent at all.
_FIELD = re.compile(r"[A-Z][A-Z0-9_]*\Z")
# The handler's repr of the exception tuple repeats EXCEPTION_TEXT without redaction.
_NOT_SENT = frozenset({"EXCEPTION_INFO"})

_SECRET_NAME = r"[\w.-]*(?:api[_-]?key|key|token|secret|password|passwd)"
# Patterns for credentials that are not the configured key (a token in a URL, a header, a
# dict or JSON dump). ``name: value`` is masked only for header names or quoted keys: the
# config errors say "live.api_key: the API key does not belong ...", which must stay readable.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"(?i)\b({_SECRET_NAME})=[^\s&\"',;]+"), rf"\1={MASK}"),
    (
        re.compile(
            r"(?i)(\b(?:x-goog-api-key|authorization)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)"
            r"[^\s\"',;]+"
        ),
        rf"\1{MASK}",
    ),
    (re.compile(rf"(?i)([\"']{_SECRET_NAME}[\"']\s*:\s*[\"'])[^\"']+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+"), f"Bearer {MASK}"),
    (re.compile(r"AIza[0-9A-Za-z_-]{35}"), MASK),  # the shape of a Google API key
)


class Redactor(logging.Filter):
    """Masks known secrets and credential-shaped values in a record, before any handler.

    The message is rendered here (``msg`` becomes the masked text, ``args`` None), and so is
    the traceback, because both the journal and stderr handlers would otherwise render them
    from the raw values. String fields (upper-case attributes) are masked too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask ``secrets`` too from now on: credentials read after logging was set up."""
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted(
            {*self._secrets, *(s for s in secrets if len(s) >= MIN_SECRET_CHARS)},
            key=len,
            reverse=True,
        )

    def redact(self, text: str) -> str:
        """``text`` with every secret and credential-shaped value masked."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask ``record`` in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # The handler would print the raw arguments with its error report: drop them.
            message = f"{record.msg} (log arguments dropped: they do not match the format)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name.isupper() and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


def send_fields(message: str, /, **fields: Any) -> None:
    """Send one entry to the journal with only the fields it can store.

    ``JournalHandler`` passes every attribute of the record; the lower-case ones (``msg``,
    ``args``, ...) are not journal fields, and an absent value (``CLOSE_CODE=None``) is better
    left out than stored as the text "None".
    """
    kept = {
        name: value
        for name, value in fields.items()
        if value is not None and _FIELD.match(name) and name not in _NOT_SENT
    }
    sd_journal.send(message, **kept)


def under_systemd(environ: Mapping[str, str], stderr_fd: int = 2) -> bool:
    """True when systemd runs this process as a service, so its log belongs in the journal.

    ``JOURNAL_STREAM`` (device:inode of the stream systemd gave the service as stderr) counts
    only while stderr still is that stream: a shell whose terminal was started by a service
    inherits the variable, and its user wants the log on the terminal. Without it,
    ``INVOCATION_ID`` (set for every unit's processes) decides.
    """
    stream = environ.get("JOURNAL_STREAM")
    if stream:
        try:
            stat = os.fstat(stderr_fd)
        except OSError:
            return False
        return stream == f"{stat.st_dev}:{stat.st_ino}"
    return bool(environ.get("INVOCATION_ID"))


def journal_handler() -> logging.Handler:
    """A handler writing records as journal entries with their upper-case fields."""
    handler: logging.Handler = sd_journal.JournalHandler(
        sender_function=send_fields, SYSLOG_IDENTIFIER=IDENTIFIER
    )
    # The journal stamps time, level and logger itself: MESSAGE is the message alone.
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def setup_logging(
    verbose: bool, environ: Mapping[str, str], secrets: Iterable[str | None] = ()
) -> None:
    """Log to the journal under systemd, to stderr otherwise; DEBUG with ``verbose``; every
    record masked of ``secrets`` (the API keys known at start-up).

    Like :func:`logging.basicConfig`, it leaves a root logger that already has handlers alone
    (the daemon embedded in a test run keeps the runner's logging).
    """
    handler: logging.Handler
    if under_systemd(environ):
        handler = journal_handler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler.addFilter(Redactor(s.strip() for s in secrets if s))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def protect(secrets: Iterable[str | None]) -> None:
    """Hand credentials read after :func:`setup_logging` (the MQTT password, the Home
    Assistant token) to every redactor of the root logger's handlers."""
    known = [s.strip() for s in secrets if s and s.strip()]
    for handler in logging.getLogger().handlers:
        for redactor in handler.filters:
            if isinstance(redactor, Redactor):
                redactor.add(known)
