"""Run ``pi-live-voice check-config`` in this process on a generated config, and judge it.

Shared by the config property tests and ``make fuzz``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from device.cli import main
from device.config import EX_CONFIG, MAX_MESSAGE_CHARS
from services.settings_rules import one_line
from tests.strategies import HostileConfig


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    names = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "CREDENTIALS_DIRECTORY", "HOME_ASSISTANT_TOKEN")
    saved = {k: os.environ.get(k) for k in (*names, *extra)}
    for name in names:
        os.environ.pop(name, None)
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_config(case: HostileConfig) -> tuple[int, str, Path]:
    """Write ``case`` to a fresh folder and run check-config on it: (status, stderr, path)."""
    with tempfile.TemporaryDirectory(prefix="plv-config-") as folder:
        path, environ = case.write(Path(folder))
        err = io.StringIO()
        with (
            _environ(environ),
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            status = main(["check-config", "--config", str(path)])
        return status, err.getvalue(), path


def judge(case: HostileConfig, status: int, err: str, path: Path) -> str | None:
    """What check-config got wrong on a hostile config, or None."""
    lines = err.splitlines()
    if status != EX_CONFIG:
        return f"exit {status}, not {EX_CONFIG}"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr"
    line = lines[0]
    if len(line) > MAX_MESSAGE_CHARS:
        return f"a line of {len(line)} characters"
    wanted = one_line(case.key, 40) if case.key else path.name
    if wanted.rstrip("…") not in line:
        return f"does not name {wanted!r}: {line!r}"
    return None


def try_hostile(case: HostileConfig) -> str | None:
    """Run and judge one hostile config; an exception is a mishandling too."""
    try:
        status, err, path = check_config(case)
    except (Exception, SystemExit) as exc:  # a traceback is what must never happen
        return f"raised {type(exc).__name__}: {one_line(str(exc), 120)}"
    return judge(case, status, err, path)
