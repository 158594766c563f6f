"""Clock points inside the daemon under test, taken without changing what it does.

* :class:`TimedLiveSession` is the daemon's own session with two stamps: the moment a checked
  server message reaches it (before the session has looked at it), and the moment a tool
  response has been handed to the socket.
* :class:`PacedPcm` wraps the real ALSA PCM of the speaker. The ``file`` plugin of the
  virtual sound card takes any amount of audio at once; a real device takes one period per
  period. The wrapper makes writes block the way a device buffer of the granted size would,
  so the sink is really mid-reply when an ``interrupted`` arrives, and it stamps every write
  and every drop.

All times are ``time.monotonic()``: one clock for every process on the machine, so they
compare with the stand-in's trace.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

from device.alsa_pcm import Pcm, PcmGrant, PcmOpener, PcmRequest, open_alsa_pcm
from services.live.inbound import ServerMessage
from services.live.protocol import Effect
from services.live.session import LiveSession

# Bounds on what the stamps may hold: a run records well under these.
MAX_STAMPS = 200_000


@dataclass
class Received:
    """A server message as it reached the session."""

    at: float
    tool_call_ids: tuple[str, ...] = ()
    tool_names: tuple[str, ...] = ()
    interrupted: bool = False


class TimedLiveSession(LiveSession):
    """The daemon's session, stamping messages in and tool responses out.

    It wraps two private steps of :class:`LiveSession`, the only places these moments exist;
    if a refactor renames them the stamps stop coming and the bench's smoke test, which
    wants samples of every latency, fails rather than the figures quietly going wrong."""

    def __init__(self, *args: Any, keep_stamps: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Without stamps only the turns are counted: nothing of the bench's grows with time.
        self.keep_stamps = keep_stamps
        self.received: list[Received] = []
        self.responded: dict[str, float] = {}
        self.turns_completed = 0

    def _on_message(self, message: ServerMessage) -> list[Effect]:
        now = time.monotonic()
        calls = message.tool_calls or ()
        content = message.content
        interrupted = bool(content is not None and content.interrupted)
        if content is not None and content.turn_complete:
            self.turns_completed += 1
        if self.keep_stamps and (calls or interrupted) and len(self.received) < MAX_STAMPS:
            self.received.append(
                Received(
                    now,
                    tuple(fc.id for fc in calls),
                    tuple(fc.name for fc in calls),
                    interrupted,
                )
            )
        return super()._on_message(message)

    async def _send_tool_response(self, response: types.FunctionResponse, size: int) -> bool:
        sent = await super()._send_tool_response(response, size)
        if self.keep_stamps and sent and response.id and len(self.responded) < MAX_STAMPS:
            self.responded[response.id] = time.monotonic()
        return sent


@dataclass
class PcmLog:
    """Stamps of the speaker PCM: (start, end, frames) per write, and (start, end) per drop."""

    writes: list[tuple[float, float, int]] = field(default_factory=list)
    drops: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class PacedPcm:
    """A :class:`~device.alsa_pcm.Pcm` that plays its buffer out in real time."""

    def __init__(self, inner: Pcm, stamps: PcmLog) -> None:
        self._inner = inner
        self._stamps = stamps
        grant = inner.grant
        self._rate = grant.rate
        self._frame_bytes = 2 * grant.channels
        self._capacity_s = grant.buffer_frames / grant.rate
        # When the device will have played everything written so far.
        self._played_at = 0.0

    @property
    def grant(self) -> PcmGrant:
        """The real device's grant."""
        return self._inner.grant

    def read(self) -> bytes | None:
        """Capture is not paced here."""
        return self._inner.read()

    def write(self, data: bytes) -> int:
        """Block until the buffer has room, as a device does, then write."""
        start = time.monotonic()
        seconds = len(data) // self._frame_bytes / self._rate
        queued = max(0.0, self._played_at - start)
        wait = queued + seconds - self._capacity_s
        if wait > 0:
            time.sleep(wait)
        underruns = self._inner.write(data)
        end = time.monotonic()
        self._played_at = max(end, self._played_at) + seconds
        with self._stamps.lock:
            if len(self._stamps.writes) < MAX_STAMPS:
                self._stamps.writes.append((start, end, len(data) // self._frame_bytes))
        return underruns

    def pending_frames(self) -> int:
        """What is left to play, by the clock."""
        return int(max(0.0, self._played_at - time.monotonic()) * self._rate)

    def drop(self) -> None:
        """Discard the buffer: silence from now on."""
        start = time.monotonic()
        self._inner.drop()
        self._played_at = 0.0
        end = time.monotonic()
        with self._stamps.lock:
            if len(self._stamps.drops) < MAX_STAMPS:
                self._stamps.drops.append((start, end))

    def close(self) -> None:
        """Release the device."""
        self._inner.close()


def paced_opener(stamps: PcmLog) -> PcmOpener:
    """An opener for :class:`~device.playback.AlsaAudioSink` giving paced, stamped PCMs."""

    def open_paced(request: PcmRequest) -> Pcm:
        return PacedPcm(open_alsa_pcm(request), stamps)

    return open_paced
