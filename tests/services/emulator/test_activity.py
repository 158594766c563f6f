"""The stand-in's automatic activity detection, without a socket: levels in, decisions out."""

from __future__ import annotations

from services.emulator.activity import EnergyVad, VadSettings

CHUNK_MS = 20.0


def run(vad: EnergyVad, levels: list[float], speaking: bool = False) -> list[tuple[int, str]]:
    """Feed chunk RMS levels; returns (chunk index, change), following the changes."""
    changes: list[tuple[int, str]] = []
    for i, rms in enumerate(levels):
        change = vad.feed(rms, CHUNK_MS, speaking)
        if change is not None:
            changes.append((i, change))
            speaking = change == "start"
    return changes


def test_speech_from_the_first_chunk_is_heard_and_ends_after_the_hang_over() -> None:
    vad = EnergyVad(VadSettings())
    assert run(vad, [4000.0] * 15 + [0.0] * 25) == [(2, "start"), (34, "end")]


def test_steady_room_tone_becomes_the_floor_and_speech_over_it_still_counts() -> None:
    vad = EnergyVad(VadSettings(window_ms=1000.0))
    tone = [600.0] * 100  # above min_rms: read as speech until it fills the window
    changes = run(vad, tone)
    assert changes[0] == (2, "start")
    assert changes[-1][1] == "end"
    assert vad.floor_rms == 600.0
    assert vad.threshold() > 1000.0
    assert run(vad, [4000.0] * 5 + [600.0] * 25) == [(2, "start"), (24, "end")]


def test_the_floor_follows_the_room_down_at_once_in_the_window() -> None:
    vad = EnergyVad(VadSettings(window_ms=1000.0))
    run(vad, [600.0] * 100)
    run(vad, [100.0] * 10)
    assert vad.floor_rms == 100.0
    assert vad.threshold() == 500.0  # min_rms
