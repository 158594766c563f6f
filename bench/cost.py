"""What the daemon costs: CPU while idle, listening and speaking, peak RSS, start-up, import.

The daemon runs exactly as installed — ``python -m device.cli run --config FILE`` — in a
process of its own, on the virtual sound card with gpiozero's mock pins, against a stand-in in
this process. Its CPU time is read from ``/proc/PID/stat`` (every thread of the process, user
and system) every 100 ms; the windows come from the stand-in's trace:

* listening: ``activityStart`` → ``activityEnd`` received (capture, VAD, sending);
* speaking: first reply audio sent → ``turnComplete`` sent, the reply streamed in real time
  (receiving, decoding, playback);
* idle: a stretch before the user speaks (capture and VAD only).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.mic import ScriptedMic
from bench.probe_runner import ROOT, child_env
from bench.standin import API_KEY, standin
from bench.waiting import until
from device.virtual_audio import MIC_PCM, SPEAKER_PCM, VIRTUAL_PCMS, speak
from services.emulator.trace import TraceRecord

PHRASE = "the kitchen light is on and the hall light is off"
SAMPLE_S = 0.1
START_LIMIT_S = 60.0
TURN_LIMIT_S = 300.0
STOP_LIMIT_S = 10.0
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass
class CostResult:
    """CPU in % of one core per activity, peak RSS, and start-up times."""

    cpu_pct_idle: float
    cpu_pct_listening: float
    cpu_pct_speaking: float
    rss_peak_mib: float
    ready_s: float
    ready_clock: str  # which moment "ready" was taken at
    windows_s: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def _proc_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Sampler:
    """The child's cumulative CPU seconds, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.hwm_mib = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.samples.append((time.monotonic(), _proc_cpu_s(self.pid)))
                self.hwm_mib = max(self.hwm_mib, _proc_hwm_mib(self.pid))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAMPLE_S):
                    await stop.wait()

    def cpu_pct(self, start: float, end: float) -> float:
        """Mean CPU of the child between ``start`` and ``end``, in % of one core."""
        times = [t for t, _ in self.samples]
        cpu = [c for _, c in self.samples]
        used = float(np.interp(end, times, cpu) - np.interp(start, times, cpu))
        return round(100 * used / (end - start), 2) if end > start else 0.0


class _NotifySocket:
    """An ``AF_UNIX`` datagram socket standing in for systemd's ``NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._halt.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def first(self, line: str) -> float | None:
        """When a datagram holding ``line`` arrived."""
        for at, text in list(self.messages):
            if line in text.splitlines():
                return at
        return None

    def close(self) -> None:
        """Stop reading and remove the socket."""
        self._halt.set()
        self._thread.join(2)
        self._sock.close()
        self.path.unlink(missing_ok=True)


def daemon_config(em_url: str, ca_file: Path) -> str:
    """The daemon's config for a bench run: the virtual card, open mic, one relay."""
    return f"""\
[live]
endpoint = "{em_url}"
ca_file = "{ca_file}"
model = "bench"

[audio]
capture_device = "{MIC_PCM}"
playback_device = "{SPEAKER_PCM}"

[vad]
max_utterance_ms = 120000

[button]
pin = false
mode = "always"

[leds]
status_pin = 22
tool_pending_pin = 27

[[outputs]]
name = "kitchen_light"
pin = 5
kind = "relay"
"""


def _phrases(seconds: float) -> str:
    """Speech of about ``seconds`` (a phrase is about 3 s), without pauses long enough to end
    an utterance."""
    return ", ".join([PHRASE] * max(1, round(seconds / 3)))


def _first_t(records: list[TraceRecord], event: str, kind: str) -> float | None:
    return next((r["t"] for r in records if r["event"] == event and r.get("kind") == kind), None)


def _last_t(records: list[TraceRecord], event: str, kind: str) -> float | None:
    times = [r["t"] for r in records if r["event"] == event and r.get("kind") == kind]
    return times[-1] if times else None


class _Daemon:
    """``pi-live-voice run`` in a child process: its log, its CPU, stopped by PID at the end."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self._config = config
        self._env = env
        self.lines: list[tuple[float, str]] = []
        self.spawned = 0.0
        self.process: asyncio.subprocess.Process | None = None
        self.sampler: _Sampler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_sampling = asyncio.Event()

    async def _read_log(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip()))

    async def __aenter__(self) -> _Daemon:
        self.spawned = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device.cli",
            "run",
            "--config",
            str(self._config),
            cwd=ROOT,
            env=self._env,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stderr is not None
        self.sampler = _Sampler(self.process.pid)
        self._tasks = [
            asyncio.create_task(self._read_log(self.process.stderr), name="daemon-log"),
            asyncio.create_task(self.sampler.run(self._stop_sampling), name="cpu-sampler"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_LIMIT_S):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._stop_sampling.set()
        await asyncio.gather(*self._tasks)

    @property
    def running(self) -> bool:
        """The child has not exited."""
        return self.process is not None and self.process.returncode is None

    def first_log(self, text: str) -> float | None:
        """When a log line holding ``text`` arrived."""
        return next((t for t, line in self.lines if text in line), None)


async def _ready(daemon: _Daemon, notify: _NotifySocket) -> tuple[float, str]:
    """Seconds from spawn to ready, and which clock point that was."""

    def seen() -> bool:
        return (
            notify.first("READY=1") is not None
            or daemon.first_log("state: idle") is not None
            or not daemon.running
        )

    await until(seen, every=0.01, within=START_LIMIT_S)
    if notify.first("READY=1") is None and daemon.running:
        # Idle came first: give a READY=1 that follows it the chance to be the clock point.
        with contextlib.suppress(TimeoutError):
            await until(lambda: notify.first("READY=1") is not None, every=0.01, within=0.5)
    ready = notify.first("READY=1")
    if ready is not None:
        return ready - daemon.spawned, "READY=1 on NOTIFY_SOCKET"
    idle = daemon.first_log("state: idle")
    if idle is None or not daemon.running:
        raise RuntimeError(
            "the daemon exited during start-up: " + " / ".join(t for _, t in daemon.lines[-5:])
        )
    return idle - daemon.spawned, "first 'state: idle' log line (no READY=1 was sent)"


def _windows(records: list[TraceRecord]) -> tuple[tuple[float, float], tuple[float, float]]:
    """(listening, speaking) windows from the stand-in's trace."""
    listen_from = _first_t(records, "in", "activityStart")
    listen_to = _last_t(records, "in", "activityEnd")
    speak_from = _first_t(records, "out", "serverContent.audio")
    speak_to = _last_t(records, "out", "serverContent.turnComplete")
    if listen_from is None or listen_to is None or speak_from is None or speak_to is None:
        raise RuntimeError("the cost run did not complete its turn")
    return (listen_from, listen_to), (speak_from, speak_to)


def daemon_env(home: Path, fifo: Path, notify: Path) -> dict[str, str]:
    """The daemon's environment for a bench run: the virtual card's files, mock pins."""
    return child_env(
        {
            "GEMINI_API_KEY": API_KEY,
            "GPIOZERO_PIN_FACTORY": "mock",
            "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin",
            "XDG_CONFIG_HOME": str(home),
            "PLV_MIC_IN": str(fifo),
            "PLV_SPEAKER_OUT": os.devnull,
            "NOTIFY_SOCKET": str(notify),
        }
    )


async def measure(workdir: Path, idle_s: float, listen_s: float, speak_s: float) -> CostResult:
    """Run the daemon through idle, one long utterance and one long reply; measure it."""
    home = workdir / "cost-alsa"
    (home / "alsa").mkdir(parents=True, exist_ok=True)
    (home / "alsa" / "asoundrc").write_text(VIRTUAL_PCMS)
    fifo = workdir / "cost-mic.fifo"
    os.mkfifo(fifo)
    utterance = await asyncio.to_thread(speak, _phrases(listen_s), "en-us", 160)
    scenario = {"name": "bench-cost", "turns": [{"reply": _phrases(speak_s)}]}
    mic = ScriptedMic(fifo)
    mic.start()
    notify = _NotifySocket(workdir / "notify.sock")
    try:
        async with standin(scenario, workdir, pace=1.0) as em:
            config = workdir / "cost-config.toml"
            config.write_text(daemon_config(em.base_url, em.settings.cert_out))
            async with _Daemon(config, daemon_env(home, fifo, notify.path)) as daemon:
                ready_s, ready_clock = await _ready(daemon, notify)
                idle = (time.monotonic(), time.monotonic() + idle_s)
                await asyncio.sleep(idle_s)
                mic.say(utterance)
                await until(
                    lambda: bool(em.trace.select("out", kind="serverContent.turnComplete")),
                    every=0.1,
                    within=TURN_LIMIT_S,
                )
                await asyncio.sleep(2 * SAMPLE_S)
            records = em.trace.select()
    finally:
        mic.stop()
        notify.close()
    assert daemon.sampler is not None
    assert daemon.process is not None
    listening, speaking = _windows(records)
    notes = []
    starts = sum(1 for r in records if r["event"] == "in" and r.get("kind") == "activityStart")
    if starts != 1:
        notes.append(f"the long utterance reached the stand-in as {starts} turns")
    if daemon.process.returncode not in (0, -signal.SIGTERM):
        notes.append(f"the daemon exited with {daemon.process.returncode} on SIGTERM")
    return CostResult(
        cpu_pct_idle=daemon.sampler.cpu_pct(*idle),
        cpu_pct_listening=daemon.sampler.cpu_pct(*listening),
        cpu_pct_speaking=daemon.sampler.cpu_pct(*speaking),
        rss_peak_mib=round(daemon.sampler.hwm_mib, 1),
        ready_s=round(ready_s, 3),
        ready_clock=ready_clock,
        windows_s={
            "idle": round(idle[1] - idle[0], 1),
            "listening": round(listening[1] - listening[0], 1),
            "speaking": round(speaking[1] - speaking[0], 1),
        },
        notes=notes,
    )


_IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)")
OWN = ("device", "services", "bench")


def _entry_points(report: str, top: int = 4) -> list[tuple[str, float]]:
    """The third-party modules our code imports directly, heaviest first (cumulative s).

    ``-X importtime`` prints a module after the modules it imports, indented by depth; read
    backwards, each line's parent is the nearest earlier line of smaller depth."""
    lines = [
        (len(m.group(3)), m.group(4), int(m.group(2)) / 1e6) for m in _IMPORT_LINE.finditer(report)
    ]
    stack: list[tuple[int, str]] = []
    entries: dict[str, float] = {}
    for depth, name, cumulative in reversed(lines):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        ours = name.split(".")[0] in OWN
        if not ours and (parent is None or parent.split(".")[0] in OWN):
            entries[name] = max(entries.get(name, 0.0), cumulative)
        stack.append((depth, name))
    return sorted(entries.items(), key=lambda kv: -kv[1])[:top]


@dataclass(frozen=True)
class ImportCost:
    """``import device.daemon`` in a fresh interpreter."""

    seconds: float  # median
    rss_mib: float  # peak RSS of the interpreter once imported
    heaviest: list[tuple[str, float]]  # third-party modules we import, cumulative seconds


async def import_time(runs: int) -> ImportCost:
    """Time ``import device.daemon`` in ``runs`` fresh interpreters; find the heavy imports."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec, so a child
    # forked from this (large) process would report the bench's own peak.
    code = (
        "import time; t = time.perf_counter(); import device.daemon; "
        "print(time.perf_counter() - t, "
        "next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
    )
    times = []
    rss_kib = []
    for _ in range(runs):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, cwd=ROOT, env=child_env(), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        seconds, kib = out.decode().split()
        times.append(float(seconds))
        rss_kib.append(int(kib))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        "-c",
        "import device.daemon",
        cwd=ROOT,
        env=child_env(),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    heaviest = _entry_points(err.decode(errors="replace"))
    return ImportCost(
        seconds=round(statistics.median(times), 3),
        rss_mib=round(max(rss_kib) / 1024, 1),
        heaviest=[(n, round(s, 3)) for n, s in heaviest],
    )
