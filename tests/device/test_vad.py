"""The endpointer without ALSA: scripted voiced/unvoiced frames in, utterance events out."""

from __future__ import annotations

import numpy as np
import pytest

from device.echo import EchoGate, EchoMode, EchoSettings
from device.frames import Rechunker
from device.vad import (
    Endpointer,
    EndReason,
    FrameUse,
    NoiseFloor,
    SpeechAudio,
    SpeechDiscarded,
    SpeechEnded,
    SpeechStarted,
    StartTrigger,
    VadEvent,
    VadSettings,
    level_db,
)
from tests.speech_fixtures import noise

FRAME = 640  # 20 ms at 16 kHz, s16le
VOICED = b"\x01\x00" * (FRAME // 2)
SILENT = b"\x00\x00" * (FRAME // 2)


def scripted(frame: bytes, strict: bool) -> bool:
    """A classifier that hears what the script says: any non-zero sample is speech."""
    return frame != SILENT


def endpointer(**overrides: object) -> Endpointer:
    values: dict[str, object] = {
        "frame_ms": 20,
        "start": StartTrigger(voiced_frames=3, window_frames=5),
        "strict_start": StartTrigger(voiced_frames=5, window_frames=5),
        "preroll_ms": 100,
        "hangover_ms": 100,
        "min_utterance_ms": 100,
        "max_utterance_ms": 1000,
        "noise_margin_db": 0.0,
    }
    values.update(overrides)
    return Endpointer(VadSettings(**values), classifier=scripted)  # type: ignore[arg-type]


def frames(script: str) -> list[bytes]:
    """'v' a voiced frame, '.' a silent one; voiced frames are numbered so each is unique."""
    out = []
    for i, c in enumerate(script):
        out.append(SILENT if c == "." else (i + 1).to_bytes(2, "little") * (FRAME // 2))
    return out


def run(ep: Endpointer, script: str, use: FrameUse = FrameUse.NORMAL) -> list[VadEvent]:
    events = [ep.process(f, use) for f in frames(script)]
    return [e for e in events if e is not None and not isinstance(e, SpeechAudio)]


def test_start_needs_n_voiced_of_m_and_reports_the_onset() -> None:
    ep = endpointer()
    events = run(ep, "...v..v.vv" + "v" * 3)
    started = events[0]
    assert isinstance(started, SpeechStarted)
    # Frames 6, 8, 9 are 3 voiced of the last 5 at frame 9; the onset is the first of them.
    assert started.onset_frame == 6
    # min_utterance 100 ms = 5 frames from the onset: confirmed at frame 10.
    assert started.at_frame == 10
    assert ep.in_speech


def test_preroll_carries_audio_before_the_onset_in_order() -> None:
    ep = endpointer()
    script = "......vvvvv"
    sent = frames(script)
    started = run(ep, script)[0]
    assert isinstance(started, SpeechStarted)
    # 100 ms of pre-roll (5 frames) before the onset at frame 6, then frames 6..10.
    assert list(started.preroll) == sent[1:11]


def test_hangover_ends_the_utterance_one_past_the_last_voiced_frame() -> None:
    ep = endpointer()
    events = run(ep, "vvvvvvvv..v" + "." * 5 + "v")
    started, ended = events[0], events[1]
    assert isinstance(started, SpeechStarted)
    # A pause shorter than the hang-over does not end it; five silent frames do.
    assert isinstance(ended, SpeechEnded)
    assert ended.reason is EndReason.SILENCE
    assert ended.end_frame == 11
    assert ended.at_frame == ended.end_frame + ep.hangover_frames - 1
    assert not ep.in_speech


def test_a_blip_shorter_than_the_minimum_is_discarded_not_started() -> None:
    events = run(endpointer(), "vvv" + "." * 6)
    assert len(events) == 1
    assert isinstance(events[0], SpeechDiscarded)
    assert events[0].length_frames == 3


def test_max_length_cuts_a_never_ending_utterance() -> None:
    events = run(endpointer(max_utterance_ms=200), "v" * 20)
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert ended[0].reason is EndReason.MAX_LENGTH
    assert ended[0].at_frame - events[0].onset_frame == 10  # type: ignore[union-attr]


def test_freeze_ends_speech_and_resume_starts_from_a_clean_slate() -> None:
    ep = endpointer()
    run(ep, "vvvvvv")
    assert ep.in_speech
    ended = ep.freeze()
    assert isinstance(ended, SpeechEnded)
    assert ended.reason is EndReason.FROZEN
    assert run(ep, "vvvvvvvvvv") == []  # frozen: nothing happens, frames still counted
    assert ep.frames_seen == 16
    ep.resume()
    # Two voiced frames from before the freeze must not count towards the next start.
    assert run(ep, "vv") == []
    assert isinstance(run(ep, "vvv")[0], SpeechStarted)


def test_strict_trigger_applies_while_the_speaker_plays() -> None:
    # 3 of 5 starts speech normally, but not under the strict 5-of-5 trigger.
    assert run(endpointer(), "vv.vvvvv", FrameUse.NORMAL)
    ep = endpointer()
    assert run(ep, "vv.vv.vv.v", FrameUse.STRICT) == []
    started = run(ep, "vvvvv", FrameUse.STRICT)[0]
    assert isinstance(started, SpeechStarted)
    assert started.strict


def test_discarded_frames_break_a_start_and_count_as_silence() -> None:
    ep = endpointer()
    run(ep, "vv")
    assert run(ep, "vv", FrameUse.DISCARD) == []
    assert run(ep, "v") == []  # the window was broken: one voiced frame is not enough
    run(ep, "vvvvvv")
    assert ep.in_speech
    ended = run(ep, "vvvvv", FrameUse.DISCARD)
    assert isinstance(ended[0], SpeechEnded)


def test_wrong_frame_size_is_refused() -> None:
    with pytest.raises(ValueError, match="640-byte"):
        endpointer().process(b"\x00" * 100)


@pytest.mark.parametrize(
    "overrides",
    [
        {"frame_ms": 25},
        {"hangover_ms": 5},
        {"max_utterance_ms": 100},
        {"noise_margin_db": -1.0},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object]) -> None:
    values: dict[str, object] = {"frame_ms": 20, **overrides}
    with pytest.raises(ValueError, match="must"):
        VadSettings(**values)  # type: ignore[arg-type]


def _noise(rms: float, n: int, seed: int) -> list[bytes]:
    samples = np.random.default_rng(seed).normal(0, rms, n * FRAME // 2)
    pcm = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    return Rechunker(FRAME).push(pcm)


def test_noise_floor_rises_to_steady_noise_and_lets_louder_speech_through() -> None:
    floor = NoiseFloor(window_frames=50, margin_db=6.0)
    loud_noise = [floor.above(f) for f in _noise(1000.0, 60, seed=1)]
    # Noise after silence is "above" only until it fills the window's low percentile.
    assert not any(loud_noise[-10:])
    assert floor.floor_db == pytest.approx(60.0, abs=1.0)  # 20·log10(1000) = 60 dB
    assert all(floor.above(f) for f in _noise(4000.0, 5, seed=2))  # +12 dB: speech


def test_endpointer_ignores_loud_steady_noise_the_classifier_calls_speech() -> None:
    noisy = _noise(1500.0, 100, seed=3)
    everything_is_speech = Endpointer(VadSettings(), classifier=lambda f, s: True)
    assert not any(isinstance(everything_is_speech.process(f), SpeechStarted) for f in noisy)
    without_floor = Endpointer(VadSettings(noise_margin_db=0), classifier=lambda f, s: True)
    assert any(isinstance(without_floor.process(f), SpeechStarted) for f in noisy)


def _starts(ep: Endpointer, pcm: bytes) -> int:
    return sum(isinstance(ep.process(f), SpeechStarted) for f in Rechunker(FRAME).push(pcm))


def test_room_tone_that_starts_while_frozen_starts_no_turn_after_resume() -> None:
    # webrtcvad itself takes brown noise for speech: only the floor can tell it is the room.
    quiet = noise(3.0, 30.0, seed=4).pcm
    room_tone = noise(6.0, 1000.0, brown=True, seed=5).pcm
    ep = Endpointer(VadSettings())
    assert _starts(ep, quiet) == 0
    ep.freeze()
    during_call, after_call = room_tone[: len(room_tone) // 2], room_tone[len(room_tone) // 2 :]
    assert _starts(ep, during_call) == 0
    ep.resume()
    assert _starts(ep, after_call) == 0
    # Speech well above the room tone still starts a turn.
    assert _starts(ep, noise(0.5, 8000.0, brown=True, seed=6).pcm) == 1


def test_levels_of_frames_gated_at_the_source_teach_the_floor() -> None:
    room_tone = Rechunker(FRAME).push(noise(6.0, 1000.0, brown=True, seed=5).pcm)
    taught, untaught = Endpointer(VadSettings()), Endpointer(VadSettings())
    for ep in (taught, untaught):
        _starts(ep, noise(3.0, 30.0, seed=4).pcm)
        ep.freeze()
    taught.learn_noise(level_db(f) for f in room_tone[:150])
    for ep in (taught, untaught):
        ep.resume()
    assert not any(isinstance(taught.process(f), SpeechStarted) for f in room_tone[150:])
    assert any(isinstance(untaught.process(f), SpeechStarted) for f in room_tone[150:])


def test_half_duplex_discards_while_playing_and_for_the_tail() -> None:
    gate = EchoGate(EchoSettings(EchoMode.HALF_DUPLEX, tail_ms=60), frame_ms=20)
    uses = [gate.classify(p) for p in [False, True, True, False, False, False, False]]
    d, n = FrameUse.DISCARD, FrameUse.NORMAL
    assert uses == [n, d, d, d, d, d, n]


def test_barge_in_listens_under_the_strict_trigger_while_playing() -> None:
    gate = EchoGate(EchoSettings(EchoMode.BARGE_IN, tail_ms=20), frame_ms=20)
    uses = [gate.classify(p) for p in [True, False, False]]
    assert uses == [FrameUse.STRICT, FrameUse.STRICT, FrameUse.NORMAL]
    gate.classify(True)
    gate.reset()
    assert gate.classify(False) is FrameUse.NORMAL
