"""The daemon as systemd runs it: a subprocess with a notify socket, a real journald.

``pi-live-voice run`` runs as a child process against the stand-in (in this process, on
loopback), the virtual sound card (a FIFO microphone, a file speaker) and gpiozero's mock
pins. A test owns the ``NOTIFY_SOCKET`` it hands the daemon and reads every sd_notify message
from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from device.virtual_audio import VIRTUAL_PCMS, FifoMic, speak
from services.emulator.server import Emulator
from tests.conftest import API_KEY

DAEMON = Path(sys.executable).with_name("pi-live-voice")
LIGHT_ON = {"name": "set_output", "args": {"name": "kitchen_light", "on": True}}
# What systemd sets for a service; the daemon under test gets only what the test gives it.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "INVOCATION_ID")
JOURNAL_DIR = Path("/run/systemd/journal")
JOURNALD = Path("/lib/systemd/systemd-journald")


@pytest.fixture(scope="session")
def request_speech() -> bytes:
    """ "Turn on the kitchen light", spoken by espeak-ng at 16 kHz."""
    return speak("Turn on the kitchen light, please.")


def write_config(path: Path, em: Emulator, **daemon: float) -> Path:
    """A daemon config for the stand-in ``em`` and the virtual sound card; GPIO on mock pins
    (plain ones, so the status LED does not use PWM)."""
    daemon_lines = "\n".join(f"{key} = {value}" for key, value in daemon.items())
    path.write_text(
        f"""\
[live]
endpoint = {json.dumps(em.base_url)}
ca_file = {json.dumps(str(em.settings.cert_out))}
model = "test"

[audio]
capture_device = "plv_mic"
playback_device = "plv_speaker"

[vad]
hangover_ms = 400

[button]
pin = 17
mode = "always"

[leds]
status_pin = 22
status_pwm = false
tool_pending_pin = 27

[[outputs]]
name = "kitchen_light"
pin = 5

[daemon]
{daemon_lines}
"""
    )
    return path


def daemon_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The child's environment: the virtual sound card, mock pins, the test key, ``extra``."""
    alsa_home = tmp_path / "alsa-home"
    (alsa_home / "alsa").mkdir(parents=True, exist_ok=True)
    (alsa_home / "alsa" / "asoundrc").write_text(VIRTUAL_PCMS)
    environ = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    environ.pop("JOURNAL_STREAM", None)
    environ.update(
        XDG_CONFIG_HOME=str(alsa_home),
        PLV_MIC_IN=str(tmp_path / "mic.fifo"),
        PLV_SPEAKER_OUT=str(tmp_path / "speaker.raw"),
        GPIOZERO_PIN_FACTORY="mock",
        GEMINI_API_KEY=API_KEY,
        PYTHONUNBUFFERED="1",
    )
    environ.update(extra)
    return environ


@dataclass
class Mic:
    """The FIFO microphone, plus a second writer that keeps the FIFO open: once the feeder
    stops, the daemon's capture read blocks, as a hung driver would."""

    feeder: FifoMic
    holder: int

    def hang(self) -> None:
        """Stop feeding without closing the FIFO: the capture thread hangs in read()."""
        self.feeder.stop()


@contextlib.contextmanager
def fifo_mic(tmp_path: Path) -> Iterator[Mic]:
    """Create and feed the FIFO the daemon's ``plv_mic`` reads."""
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    feeder = FifoMic(fifo)
    feeder.start()
    holder = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        yield Mic(feeder, holder)
    finally:
        feeder.stop()
        os.close(holder)


@dataclass
class Running:
    """A started ``pi-live-voice run``: its process and where its output goes."""

    proc: subprocess.Popen[bytes]
    stderr: Path

    def output(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        return self.stderr.read_text(errors="replace")

    def terminate(self, within: float = 15.0) -> int:
        """SIGTERM, then wait for the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(within)


# The unit's MemoryDenyWriteExecute=yes, without systemd: the kernel's PR_SET_MDWE (Linux 6.3+)
# refuses writable-and-executable memory to this process and to the program it then executes.
MDWE_LAUNCHER = """\
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE failed: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""


@contextlib.contextmanager
def running_daemon(
    config: Path,
    environ: dict[str, str],
    tmp_path: Path,
    wrap: Callable[[list[str]], list[str]] = list,
) -> Iterator[Running]:
    """Start ``pi-live-voice run --config config`` under the unit's W^X rule (the command
    passed through ``wrap``); kill it by PID if the test left it alive."""
    stderr = tmp_path / "daemon.stderr"
    command = [sys.executable, "-c", MDWE_LAUNCHER, str(DAEMON), "run", "--config", str(config)]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            wrap(command),
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    try:
        yield Running(proc, stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def wait_for_output(daemon: Running, text: str, within: float = 30.0) -> None:
    """Poll the daemon's output (a file) until ``text`` shows; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while text not in daemon.output():
        assert daemon.proc.poll() is None, daemon.output()
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.1)


@dataclass
class NotifySocket:
    """A test-owned ``NOTIFY_SOCKET``: every message, one line each, with its arrival time."""

    path: Path
    sock: socket.socket
    messages: list[tuple[float, str]] = field(default_factory=list)
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    async def pump(self) -> None:
        """Read datagrams until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            now = time.monotonic()
            self.messages.extend((now, line) for line in data.decode().splitlines() if line)
            self._new.set()

    def lines(self, prefix: str = "") -> list[str]:
        """Messages so far that start with ``prefix``."""
        return [m for _, m in self.messages if m.startswith(prefix)]

    def times(self, message: str) -> list[float]:
        """When ``message`` arrived, each time."""
        return [t for t, m in self.messages if m == message]

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait, at most ``within`` seconds, until ``predicate()`` holds."""
        async with asyncio.timeout(within):
            while not predicate():
                self._new.clear()
                await self._new.wait()


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    """Bind an ``AF_UNIX`` datagram socket in ``tmp_path`` and read it in the background."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "AF_UNIX paths are limited to 108 bytes"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        listener = NotifySocket(path, sock)
        task = asyncio.create_task(listener.pump(), name="notify-socket")
        try:
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- journald -------------------------------------------------------------------------------


def _journal_accepts() -> bool:
    """True when a journald answers on the native socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(
                b"MESSAGE=probe\nSYSLOG_IDENTIFIER=pi-live-voice-tests\n",
                str(JOURNAL_DIR / "socket"),
            )
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def journald() -> Iterator[None]:
    """A running journald: the system's if there is one, else one started here (and stopped
    by its PID at the end). Needs root, as journald does."""
    if _journal_accepts():
        yield
        return
    assert os.geteuid() == 0, "journald must run as root to own its sockets and files"
    # A journald that was killed leaves its sockets behind; the new one cannot bind over them.
    for stale in JOURNAL_DIR.glob("*") if JOURNAL_DIR.is_dir() else ():
        if stale.is_socket():
            stale.unlink()
    proc = subprocess.Popen(
        [str(JOURNALD)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not _journal_accepts():
            assert proc.poll() is None, (
                f"journald exited: {proc.stderr.read() if proc.stderr else ''!r}"
            )
            assert time.monotonic() < deadline, "journald did not open its socket within 10 s"
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def journal_entries(*matches: str) -> list[dict[str, Any]]:
    """``journalctl -o json`` entries matching every ``FIELD=value`` in ``matches``."""
    out = subprocess.run(
        ["journalctl", "--no-pager", "-o", "json", *matches],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def poll_journal(*matches: str, within: float = 15.0) -> list[dict[str, Any]]:
    """Poll the journal (it indexes entries shortly after they arrive) for ``matches``; an
    empty list after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        entries = journal_entries(*matches)
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)
