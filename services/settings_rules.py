"""The rules a config value must meet, shared by every section's reader. Standard library only.

Each rule takes a decoded value and returns None when it is fine, or the reason it is not,
worded to follow the key's name in a one-line message. Values are echoed only through
:func:`excerpt`: short, single-line, escaped. Files named by the config are checked here too
(regular, readable, bounded, UTF-8; CA files PEM), so that every file read fails with the
file's name and the OS or decoding error instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Rule = Callable[[Any], str | None]

EXCERPT_CHARS = 40
# Any text value without a rule of its own: one line, bounded.
DEFAULT_TEXT_CHARS = 256
MAX_PATH_CHARS = 1024
MAX_SECRET_BYTES = 16 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class FileProblem(Exception):
    """A file named by the config that cannot be used; ``str()`` names it and says why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = one_line(path, 80)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: escaped, single-line, short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int) -> str:
    """``text`` with control characters escaped, cut to ``limit`` characters."""
    escaped = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def number_problem(value: Any, low: float, high: float, unit: str = "") -> str | None:
    """A finite number between ``low`` and ``high`` (``unit`` names what it counts)."""
    if not math.isfinite(value) or not low <= value <= high:
        where = f"between {low:g} and {high:g}" + (f" {unit}" if unit else "")
        return f"must be {where}, got {excerpt(value)}"
    return None


def between(low: float, high: float, unit: str = "") -> Rule:
    """The rule of :func:`number_problem` for ``low``..``high``."""
    return lambda v: number_problem(v, low, high, unit)


def text_rule(max_chars: int, pattern: re.Pattern[str] | None = None, form: str = "") -> Rule:
    """A string of at most ``max_chars`` characters, matching ``pattern`` (described by
    ``form``) or, without one, free text on one line."""

    def rule(value: Any) -> str | None:
        if len(value) > max_chars:
            return f"must be at most {max_chars} characters, got {len(value)}"
        if pattern is not None and not pattern.fullmatch(value):
            return f"{form}; got {excerpt(value)}"
        if pattern is None and _CONTROL.search(value):
            return f"must be one line without control characters, got {excerpt(value)}"
        return None

    return rule


DEFAULT_TEXT = text_rule(DEFAULT_TEXT_CHARS)


def default_rule(value: Any) -> str | None:
    """What every value without a rule of its own must meet: finite, or short one-line text."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {excerpt(value)}"
    if isinstance(value, str):
        return DEFAULT_TEXT(value)
    return None


def host_problem(value: str) -> str | None:
    """A host name (letters, digits and - in dot-separated labels) or an IP address."""
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"must be a host name or an IP address, got {excerpt(value)}"
    return None


def url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """An absolute URL with one of ``schemes``, a valid host and port, and no credentials."""
    if len(value) > MAX_PATH_CHARS or _CONTROL.search(value) or " " in value:
        return f"must be a URL, got {excerpt(value)}"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"must be a URL, got {excerpt(value)}"
    if parts.scheme not in schemes:
        wanted = ", ".join(f"{s}://" for s in schemes)
        return f"must start with {wanted}; got {excerpt(value)}"
    if not parts.hostname or host_problem(parts.hostname) is not None:
        return f"must name a valid host, got {excerpt(value)}"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if port == 0:
        return f"must have a port between 1 and 65535, got {excerpt(value)}"
    return None


def regular_file(value: str) -> Path:
    """``value`` as the path of a regular file that exists; raises :class:`FileProblem`."""
    if not value or len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise FileProblem(value[:60], "not a usable file path")
    path = Path(value)
    try:
        info = path.stat()
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
        raise FileProblem(value, reason or type(exc).__name__) from exc
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(value, "not a regular file")
    return path


def read_small_text(path: Path, limit: int = MAX_SECRET_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` (at most ``limit`` bytes); raises
    :class:`FileProblem`. Anything but a regular file (a FIFO, a device) is refused without
    being opened, and the open does not block should it be swapped for one meanwhile."""
    name = str(path)
    regular_file(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise FileProblem(name, "no such file") from exc
        raise FileProblem(name, f"cannot read: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileProblem(name, "not a regular file")
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise FileProblem(name, f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileProblem(name, f"larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(name, f"not UTF-8 text (byte {exc.start})") from exc


def ca_file(value: str) -> Path:
    """``value`` as a CA bundle: a regular file of PEM certificates; raises
    :class:`FileProblem`."""
    path = regular_file(value)
    text = read_small_text(path, 4 * 1024 * 1024)
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise FileProblem(value, "not a PEM CA file (no certificate in it)")
    try:
        ssl.create_default_context().load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        raise FileProblem(value, f"not a valid PEM CA file ({one_line(str(exc), 60)})") from exc
    return path
