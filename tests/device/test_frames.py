"""Re-chunking ALSA periods into VAD frames, and the bounded thread → asyncio bridge."""

from __future__ import annotations

import asyncio
import threading

import pytest

from device.frames import BridgeClosed, FrameBridge, Rechunker, frame_bytes


def test_periods_of_any_size_become_exact_frames_in_order() -> None:
    chunker = Rechunker(frame_bytes(20, 16_000))
    stream = bytes(range(256)) * 40
    out: list[bytes] = []
    for start, size in zip(range(0, len(stream), 441), [441] * 100, strict=False):
        out += chunker.push(stream[start : start + size])
    assert all(len(f) == 640 for f in out)
    assert b"".join(out) + stream[len(out) * 640 :][: chunker.pending] == stream


def test_frame_bytes_refuses_a_length_that_is_no_whole_sample() -> None:
    assert frame_bytes(30, 16_000) == 960
    with pytest.raises(ValueError, match="whole number of samples"):
        frame_bytes(10, 44_100 + 1)


async def test_bridge_drops_the_oldest_and_counts() -> None:
    bridge = FrameBridge(asyncio.get_running_loop(), capacity=3)

    def produce() -> None:
        for i in range(10):
            bridge.put(bytes([i]))

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join()
    got = [await bridge.get() for _ in range(3)]
    assert got == [bytes([7]), bytes([8]), bytes([9])]
    assert (bridge.accepted, bridge.dropped) == (10, 7)


async def test_paused_bridge_gates_queued_and_arriving_frames() -> None:
    bridge = FrameBridge(asyncio.get_running_loop(), capacity=10)
    bridge.put(b"a")
    bridge.paused = True
    bridge.put(b"b")
    assert (len(bridge), bridge.gated) == (0, 2)
    bridge.paused = False
    bridge.put(b"c")
    assert await bridge.get() == b"c"


async def test_a_paused_bridge_keeps_only_the_measure_of_gated_frames() -> None:
    bridge = FrameBridge(asyncio.get_running_loop(), capacity=10, measure=len)
    bridge.put(b"a")
    bridge.paused = True
    bridge.put(b"bb")
    bridge.put(b"ccc")
    bridge.paused = False
    bridge.put(b"dddd")
    assert bridge.take_gated_levels() == [1, 2, 3]
    assert bridge.take_gated_levels() == []
    assert await bridge.get() == b"dddd"


async def test_closing_wakes_a_waiting_reader() -> None:
    bridge = FrameBridge(asyncio.get_running_loop(), capacity=2)
    waiter = asyncio.create_task(bridge.get())
    await asyncio.sleep(0)
    bridge.close_threadsafe()
    with pytest.raises(BridgeClosed):
        async with asyncio.timeout(2):
            await waiter
