"""A rootfs booted with systemd as PID 1 (``systemd-nspawn --boot``), and commands inside it.

The container has its own loopback only (``--private-network``): the stand-in it talks to
runs inside it. Commands enter it with ``nsenter`` through the PID of its init; on the way out
it is powered off and the ``systemd-nspawn`` process waited for (killed by its PID if it does
not go).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.system.rootfs import GUEST_ENV

BOOT_TIMEOUT_S = 120.0
POWEROFF_TIMEOUT_S = 60.0


@dataclass
class Booted:
    """A running container: its init's PID (on the host) and the console log."""

    leader: int
    console: Path

    def run(
        self, command: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``command`` through bash inside the container, with a clean environment."""
        args = ["nsenter", "-t", str(self.leader), "-a", "env", "-i"]
        args += [f"{k}={v}" for k, v in GUEST_ENV.items()]
        args += ["bash", "-eu", "-o", "pipefail", "-c", command]
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{command!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show`` of ``unit``'s ``properties``."""
        out = self.run(f"systemctl show {unit} -p {','.join(properties)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *matches: str) -> list[dict[str, Any]]:
        """The journal entries matching all of ``matches`` (``FIELD=value``), oldest first."""
        out = self.run(f"journalctl --no-pager -o json {' '.join(matches)}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for(self, what: str, probe: Any, within: float, every: float = 0.5) -> Any:
        """Poll ``probe()`` until it returns something true, at most ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {within} s (last: {value!r})")
            time.sleep(every)


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found = []
    for task in tasks.iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


@contextlib.contextmanager
def booted(root: Path, console: Path) -> Iterator[Booted]:
    """Boot ``root`` under ``systemd-nspawn`` until ``systemctl is-system-running`` settles."""
    with console.open("wb") as out:
        nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(root),
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--console=pipe",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        leader = 0
        while not leader:
            if nspawn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the container did not start:\n{console.read_text()}")
            children = _children(nspawn.pid)
            if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "systemd":
                leader = children[0]
            else:
                time.sleep(0.1)
        box = Booted(leader, console)
        box.wait_for(
            "the container's systemd reaching a settled state",
            lambda: (
                box.run(
                    "systemctl is-system-running --wait", timeout=BOOT_TIMEOUT_S, check=False
                ).stdout.strip()
                in ("running", "degraded")
            ),
            within=BOOT_TIMEOUT_S,
        )
        yield box
    finally:
        if nspawn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if leader:
                    # SIGRTMIN+4 asks systemd for an orderly poweroff.
                    os.kill(leader, signal.SIGRTMIN + 4)
                else:
                    nspawn.terminate()
        try:
            nspawn.wait(POWEROFF_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            nspawn.kill()
            nspawn.wait(POWEROFF_TIMEOUT_S)
