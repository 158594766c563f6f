"""The input gate's logic, with no sockets."""

from __future__ import annotations

from services.live.gate import InputGate, Signal


def test_gate_shuts_on_a_tool_call_and_opens_only_when_every_call_is_resolved() -> None:
    gate = InputGate()
    assert gate.admit("audio")
    gate.shut_for([("a", "one"), ("b", "two")])
    assert gate.shut
    assert not gate.admit("audio")
    assert not gate.admit("audioStreamEnd")
    assert gate.resolve(["a"]) is False
    assert gate.shut
    assert gate.resolve(["b"]) is True
    assert gate.admit("audio")
    assert gate.dropped == {"audio": 1, "audioStreamEnd": 1}


def test_resolving_unknown_or_repeated_ids_does_not_reopen_twice() -> None:
    gate = InputGate()
    gate.shut_for([("a", "one")])
    assert gate.resolve(["a"]) is True
    assert gate.resolve(["a"]) is False
    assert gate.resolve(["zzz"]) is False


def test_activity_signals_follow_the_user_while_open() -> None:
    gate = InputGate()
    assert gate.request_activity(True) is Signal.START
    assert gate.request_activity(True) is None
    assert gate.request_activity(False) is Signal.END
    assert gate.request_activity(False) is None


def test_speech_ending_during_the_gate_sends_one_end_after_it_opens() -> None:
    gate = InputGate()
    assert gate.request_activity(True) is Signal.START
    gate.shut_for([("a", "t")])
    assert gate.request_activity(False) is None
    assert gate.resync() is None
    gate.resolve(["a"])
    assert gate.resync() is Signal.END
    assert gate.resync() is None


def test_an_utterance_wholly_inside_the_gate_leaves_no_signal() -> None:
    gate = InputGate()
    gate.shut_for([("a", "t")])
    assert gate.request_activity(True) is None
    assert gate.request_activity(False) is None
    gate.resolve(["a"])
    # Never an activityEnd without its activityStart, never a stale start.
    assert gate.resync() is None


def test_speech_starting_during_the_gate_starts_after_it_opens() -> None:
    gate = InputGate()
    gate.shut_for([("a", "t")])
    gate.request_activity(True)
    gate.resolve(["a"])
    assert gate.resync() is Signal.START


def test_a_new_connection_forgets_calls_and_restarts_ongoing_speech() -> None:
    gate = InputGate()
    gate.request_activity(True)
    gate.shut_for([("a", "t")])
    gate.new_connection()
    assert not gate.shut
    assert gate.name_of("a") is None
    assert gate.resync() is Signal.START
