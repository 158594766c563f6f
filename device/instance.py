"""One daemon per config: an ``flock`` on a lock file in the runtime directory.

Two daemons on one config would take over each other's MQTT connection and read the same
microphone. The lock file is named after the config's resolved path, in ``$RUNTIME_DIRECTORY``
(systemd's ``RuntimeDirectory=``), else ``$XDG_RUNTIME_DIR``, else a per-user directory in
the temporary directory. The kernel drops the lock when the process ends, however it ends, so
a crash leaves nothing stale behind.

A second daemon exits with :data:`EX_UNAVAILABLE` (69), which the unit lists in
``RestartPreventExitStatus=``: restarting cannot help while the first one runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

EX_UNAVAILABLE = 69


class AlreadyRunning(Exception):
    """Another daemon holds the lock; ``str()`` is the one-line message to print."""


def lock_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the lock files go: systemd's runtime directory, the user's, or a fallback."""
    for name in ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"):
        # RUNTIME_DIRECTORY may list several directories, separated by colons.
        value = environ.get(name, "").split(":")[0]
        if value:
            return Path(value)
    return Path(tempfile.gettempdir()) / f"pi-live-voice-{os.getuid()}"


def lock_path(config: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """The lock file of the daemon running ``config``."""
    key = hashlib.sha256(str(config.resolve()).encode()).hexdigest()[:16]
    return lock_directory(environ) / f"pi-live-voice-{key}.lock"


class InstanceLock:
    """Held for the life of the daemon; :meth:`acquire` raises :class:`AlreadyRunning`."""

    def __init__(self, config: Path, environ: Mapping[str, str] = os.environ) -> None:
        self.config = config
        self.path = lock_path(config, environ)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or say who holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another pi-live-voice (PID {holder}) is already running with {self.config} "
                f"(lock {self.path}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (the process's end does it too)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
