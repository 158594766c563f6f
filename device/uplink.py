"""The uplink: the one room that decides which capture frames reach the session, and when.

Each frame from the microphone is classified against the speaker (echo), run through the VAD
and its pre-roll, and — while a turn is open — put on one bounded queue together with the
turn's activity signals. One task empties that queue into the session in order. Activity
signals are never dropped (the session's gate keeps the user's intent across a tool call and
a reconnect); audio is dropped oldest first once the queue holds :data:`HOLD_S` of it, since
the newest speech is the speech still worth sending.

While the session is not connected, the turn's audio is kept (bounded, as above) and sent once
the next connection is set up, so speech during a reconnect is not lost silently; while a
blocking tool call is pending, audio is dropped and counted as gated. The session's gate stays
the authority: this room asks it first and the session checks again before anything leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from device import vad
from device.echo import EchoGate, EchoSettings
from device.events import ButtonMode, Event, SendActivity, SpeechEnded, SpeechStarted, StreamedFrame

log = logging.getLogger(__name__)

# How much audio the queue holds at most: a reconnect of a few seconds keeps the whole turn.
HOLD_S = 5.0


class SessionPort(Protocol):
    """What the uplink needs of the Live session."""

    @property
    def connected(self) -> bool:
        """True while a connection is set up."""

    async def wait_connected(self) -> None:
        """Until a connection is set up."""

    def pending_tools(self) -> tuple[str, ...]:
        """The blocking calls now pending: while any is, no realtime input may be sent."""

    async def send_audio(self, pcm: bytes) -> bool:
        """Send one frame of audio; False if it was not sent."""

    async def set_activity(self, active: bool) -> None:
        """The user started or stopped speaking."""


@dataclass
class UplinkStats:
    """What the uplink did not send, and what it kept across reconnects."""

    dropped: int = 0  # audio dropped, oldest first, from a full queue
    gated: int = 0  # audio refused because a blocking call was pending
    held: int = 0  # audio kept while disconnected and sent after the reconnect


class Uplink:
    """Capture frames in, activity signals and audio out to the session, in order."""

    def __init__(
        self,
        session: SessionPort,
        vad_settings: vad.VadSettings,
        echo: EchoSettings,
        mode: ButtonMode,
        *,
        dispatch: Callable[[Event], None],
        streaming: Callable[[], bool],
        on_signal: Callable[[bool], None] = lambda _: None,
        hold_s: float = HOLD_S,
    ) -> None:
        self._session = session
        self._mode = mode
        self._dispatch = dispatch
        self._streaming = streaming
        self._on_signal = on_signal
        self._frame_ms = vad_settings.frame_ms
        self.endpointer = vad.Endpointer(vad_settings)
        self.echo = EchoGate(echo, self._frame_ms)
        self._next_vad: vad.VadSettings | None = None
        self._queue: deque[bytes | SendActivity] = deque()
        self._audio = 0  # audio items in the queue
        self._max_audio = max(1, int(1000 * hold_s / self._frame_ms))
        self._ready = asyncio.Event()
        self.stats = UplinkStats()

    # -- capture side ----------------------------------------------------------------------
    def take(self, frame: bytes, speaker_playing: bool) -> None:
        """One capture frame: echo gate, VAD, and the queue if a turn is open."""
        use = self.echo.classify(speaker_playing)
        streaming = self._streaming()
        listen = (
            self._mode is ButtonMode.ALWAYS or streaming
        ) and self._mode is not ButtonMode.HOLD
        event = self.endpointer.process(frame, use) if listen else None
        if isinstance(event, vad.SpeechStarted):
            self._dispatch(SpeechStarted())
            if self._streaming() and not streaming:
                for earlier in event.preroll:
                    self._put(earlier)
            elif self._streaming():
                self._put(frame)
            return
        if isinstance(event, vad.SpeechEnded):
            self._dispatch(SpeechEnded())
            self._swap_vad()
            return
        if self._streaming():
            self._put(frame)
            self._dispatch(StreamedFrame(self.endpointer.in_speech))
            if not self._streaming():
                log.info("no speech heard: closing the turn")

    def signal(self, command: SendActivity) -> None:
        """Queue an activity signal behind the audio before it."""
        self._queue.append(command)
        self._ready.set()

    def pause(self, paused: bool, quiet_levels: Iterable[float] = ()) -> None:
        """A blocking call paused capture (or it resumed, with the levels heard meanwhile)."""
        if paused:
            self.endpointer.freeze()
        else:
            self.endpointer.learn_noise(quiet_levels)
            self.endpointer.resume()

    def reload(self, vad_settings: vad.VadSettings | None, echo: EchoSettings | None) -> None:
        """New VAD settings (taken between utterances) and echo settings (taken at once)."""
        if vad_settings is not None:
            self._next_vad = vad_settings
            self._swap_vad()
        if echo is not None:
            self.echo = EchoGate(echo, self._frame_ms)

    def _swap_vad(self) -> None:
        if self._next_vad is None or self.endpointer.in_speech:
            return
        if self._next_vad.frame_ms != self._frame_ms:
            log.warning("vad frame length cannot change live; it applies after a restart")
        else:
            self.endpointer = vad.Endpointer(self._next_vad)
        self._next_vad = None

    def _put(self, frame: bytes) -> None:
        if self._audio >= self._max_audio:
            self._drop_oldest_audio()
        self._queue.append(frame)
        self._audio += 1
        self._ready.set()

    def _drop_oldest_audio(self) -> None:
        for index, item in enumerate(self._queue):
            if isinstance(item, bytes):
                del self._queue[index]
                self._audio -= 1
                self.stats.dropped += 1
                return

    # -- session side ----------------------------------------------------------------------
    async def run(self) -> None:
        """Send the queue to the session, in order, for as long as the daemon runs."""
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            head = self._queue[0]
            if isinstance(head, SendActivity):
                self._queue.popleft()
                self._on_signal(head.active)
                await self._session.set_activity(head.active)
            elif not self._session.connected:
                await self._hold()
            else:
                self._queue.popleft()
                self._audio -= 1
                if self._session.pending_tools():
                    self.stats.gated += 1
                else:
                    await self._session.send_audio(head)

    async def _hold(self) -> None:
        """Keep the queued audio until the session is connected again; say what was kept."""
        dropped = self.stats.dropped
        while not self._session.connected:
            await self._session.wait_connected()
            if not self._session.connected:
                await asyncio.sleep(0)  # lost again at once: let the session move on first
        kept, lost = self._audio, self.stats.dropped - dropped
        self.stats.held += kept
        log.info(
            "connected: sending %d frames (%d ms) kept during the reconnect; %d older dropped",
            kept,
            kept * self._frame_ms,
            lost,
            extra={"HELD_FRAMES": kept, "DROPPED_FRAMES": lost},
        )
