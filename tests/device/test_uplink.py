"""The uplink's one queue: held across a reconnect, oldest audio dropped, signals never."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from device import vad
from device.echo import EchoSettings
from device.events import ButtonMode, Event, SendActivity
from device.uplink import Uplink

SILENCE = bytes(640)  # one 20 ms frame at 16 kHz


class Wire:
    """A session's send side as the uplink sees it, recording what left in order.

    No real session can be held offline at will mid-turn; the Live session's own tests cover
    its gate, so this records the uplink's decisions alone."""

    def __init__(self) -> None:
        self.connected = False
        self.pending: tuple[str, ...] = ()
        self.sent: list[bytes | bool] = []
        self._up = asyncio.Event()
        self._grew = asyncio.Event()

    def connect(self) -> None:
        self.connected = True
        self._up.set()

    async def wait_connected(self) -> None:
        await self._up.wait()

    def pending_tools(self) -> tuple[str, ...]:
        return self.pending

    async def send_audio(self, pcm: bytes) -> bool:
        assert self.connected
        assert not self.pending
        self.sent.append(pcm)
        self._grew.set()
        return True

    async def set_activity(self, active: bool) -> None:
        self.sent.append(active)
        self._grew.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self._grew.clear()
                await self._grew.wait()


def frame(n: int) -> bytes:
    """A silent frame told apart by its first sample."""
    return n.to_bytes(2, "little") + SILENCE[2:]


@contextlib.asynccontextmanager
async def running(wire: Wire, hold_s: float = 5.0) -> AsyncIterator[tuple[Uplink, list[Event]]]:
    events: list[Event] = []
    uplink = Uplink(
        wire,
        vad.VadSettings(),
        EchoSettings(),
        ButtonMode.PRESS,
        dispatch=events.append,
        streaming=lambda: True,
        hold_s=hold_s,
    )
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_speech_during_a_reconnect_is_sent_once_connected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire = Wire()
    caplog.set_level(logging.INFO, logger="device.uplink")
    async with running(wire) as (uplink, _):
        uplink.signal(SendActivity(True))
        for n in range(10):
            uplink.take(frame(n), speaker_playing=False)
        await wire.until(1)
        await asyncio.sleep(0)  # the queue is held, not sent, while offline
        assert wire.sent == [True]
        wire.connect()
        await wire.until(11)
    assert wire.sent == [True, *(frame(n) for n in range(10))]
    assert uplink.stats.held == 10
    assert uplink.stats.dropped == 0
    said = [r.getMessage() for r in caplog.records if "kept during the reconnect" in r.message]
    assert said == [
        "connected: sending 10 frames (200 ms) kept during the reconnect; 0 older dropped"
    ]


async def test_a_full_queue_drops_the_oldest_audio_and_never_a_signal() -> None:
    wire = Wire()
    async with running(wire, hold_s=0.1) as (uplink, _):  # five frames
        for n in range(4):
            uplink.take(frame(n), speaker_playing=False)
        uplink.signal(SendActivity(False))
        for n in range(4, 8):
            uplink.take(frame(n), speaker_playing=False)
        wire.connect()
        await wire.until(6)
    # Frames 0-2 went; the signal keeps its place behind frame 3.
    assert wire.sent == [frame(3), False, *(frame(n) for n in range(4, 8))]
    assert uplink.stats.dropped == 3


async def test_audio_is_gated_while_a_call_is_pending_and_signals_still_pass() -> None:
    wire = Wire()
    wire.connect()
    wire.pending = ("set_output",)
    async with running(wire) as (uplink, events):
        for n in range(3):
            uplink.take(frame(n), speaker_playing=False)
        uplink.signal(SendActivity(False))
        await wire.until(1)
        wire.pending = ()
        uplink.take(frame(9), speaker_playing=False)
        await wire.until(2)
    # The session's gate holds the signal back itself; the uplink never drops one.
    assert wire.sent == [False, frame(9)]
    assert uplink.stats.gated == 3
    assert len(events) == 4  # every streamed frame counted for the quiet-turn timer
