"""The sans-I/O Live protocol: the gate, its calls and the conversation, with no sockets."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from services.live.gate import Signal
from services.live.inbound import Content, FunctionCall, ResumptionUpdate, ServerMessage
from services.live.protocol import (
    ANSWER_FRESH_S,
    DEADLINE_MARGIN_S,
    REMEMBERED_ANSWERS,
    AnswerAgain,
    BackgroundChanged,
    CloseConnection,
    Deliver,
    Effect,
    GateChanged,
    LiveProtocol,
    SendSignal,
    StartTools,
    StopTools,
)

TIME_LIMIT_S = 5.0


def protocol(background: Sequence[str] = (), idempotent: Sequence[str] = ()) -> LiveProtocol:
    """A connected protocol; calls of the ``background`` names are non-blocking."""
    p = LiveProtocol(
        manual_activity=True,
        resumption=True,
        stall_timeout_s=10.0,
        go_away_margin_s=1.0,
        blocking=lambda name: name not in background,
        time_limit_s=lambda name: TIME_LIMIT_S,
        idempotent=lambda name: name in idempotent,
    )
    p.opened(0.0)
    return p


def tool_call(*ids: str, name: str = "set_relay") -> ServerMessage:
    return ServerMessage(size=0, tool_calls=tuple(FunctionCall(i, name, {}) for i in ids))


def gate_changes(effects: Sequence[Effect]) -> list[bool]:
    return [e.shut for e in effects if isinstance(e, GateChanged)]


def test_a_call_in_one_message_shuts_the_gate_before_its_tool_starts() -> None:
    p = protocol()
    effects = p.receive(tool_call("c1"), 1.0)
    assert effects == [
        GateChanged(True, (("c1", "set_relay"),)),
        StartTools((("c1", "set_relay", {}),)),
    ]
    assert p.gate.shut
    assert not p.offer("audio", 640, 1.1)
    assert p.activity(True) is None
    assert p.gate.dropped == {"audio": 1, Signal.START: 1}


def test_several_calls_keep_the_gate_shut_until_the_last_is_answered() -> None:
    p = protocol()
    assert gate_changes(p.receive(tool_call("a", "b"), 1.0)) == [True]
    assert p.tool_finished("a", True, {"ok": 1}, 2.0) == []
    assert p.gate.shut
    assert p.tool_finished("b", True, {"ok": 1}, 2.0) == [GateChanged(False)]
    assert p.offer("audio", 640, 2.0)


def test_speech_during_the_call_is_signalled_once_after_the_gate_opens() -> None:
    p = protocol()
    p.receive(tool_call("c1"), 1.0)
    assert p.activity(True) is None
    assert p.tool_finished("c1", True, {"ok": 1}, 2.0) == [
        GateChanged(False),
        SendSignal(Signal.START),
    ]


def test_a_cancellation_opens_the_gate_and_stops_the_tool() -> None:
    p = protocol()
    p.receive(tool_call("c1", "c2"), 1.0)
    effects = p.receive(ServerMessage(size=0, cancelled_ids=("c1", "c2")), 1.5)
    assert effects == [StopTools(("c1", "c2")), GateChanged(False)]
    assert p.awaited("c1") is None
    # An answer that was on its way when the cancellation came is owed nothing.
    assert p.tool_finished("c1", True, {"ok": 1}, 2.0) == []


def test_a_cancellation_opens_the_gate_only_after_the_content_it_came_with() -> None:
    p = protocol()
    p.receive(tool_call("c1"), 1.0)
    content = Content(interrupted=True)
    effects = p.receive(ServerMessage(size=0, cancelled_ids=("c1",), content=content), 1.5)
    assert effects == [StopTools(("c1",)), Deliver(content), GateChanged(False)]


def test_disconnect_while_pending_opens_the_gate_and_forgets_the_calls() -> None:
    p = protocol(background=("lookup",))
    p.receive(tool_call("c1"), 1.0)
    p.receive(tool_call("bg", name="lookup"), 1.0)
    p.activity(True)
    assert p.closed() == [GateChanged(False), BackgroundChanged(())]
    assert not p.gate.shut
    assert p.calls == ()
    assert p.describe_state() == "disconnected"
    # The next connection starts from no activity on the wire: the user's turn is re-sent.
    assert p.opened(3.0) == [SendSignal(Signal.START)]
    # A tool of the old connection that ends late changes nothing.
    assert p.tool_finished("c1", False, {"ok": 1}, 2.0) == []
    assert p.tick(3.5) == []


def test_resumption_keeps_the_newest_handle_across_a_closure() -> None:
    p = protocol()
    update = ResumptionUpdate(new_handle="h1", resumable=True)
    p.receive(ServerMessage(size=0, resumption=update), 1.0)
    p.receive(ServerMessage(size=0, resumption=ResumptionUpdate(None, resumable=False)), 2.0)
    assert p.handle == "h1"
    report = p.close_report(1011, "Internal error occurred.", None, 3.0)
    assert report.action.value == "resume"
    p.closed()
    assert p.handle == "h1"
    p.forget_handle()
    assert p.handle is None


def test_a_handle_from_after_turn_complete_is_the_one_kept() -> None:
    p = protocol()
    p.receive(ServerMessage(size=0, content=Content(turn_complete=True)), 1.0)
    update = ResumptionUpdate(new_handle="after-turn", resumable=True)
    p.receive(ServerMessage(size=0, resumption=update), 1.1)
    assert p.handle == "after-turn"


def test_an_overdue_call_is_abandoned_by_replacing_the_connection() -> None:
    p = protocol()
    p.receive(tool_call("c1"), 1.0)
    deadline = 1.0 + TIME_LIMIT_S + DEADLINE_MARGIN_S
    assert p.tick(deadline - 0.01) == []
    effects = p.tick(deadline)
    assert effects[0] == StopTools(("c1",))
    assert isinstance(effects[1], CloseConnection)
    assert effects[1].cause == "abandoned"
    # The gate stays shut until the connection is gone: the service still waits for the call.
    assert p.gate.shut
    report = p.close_report(None, effects[1].reason, effects[1].cause, deadline)
    assert report.context.pending[0][:2] == ("c1", "set_relay")
    assert "deadline" in report.cause
    assert gate_changes(p.closed()) == [False]


def test_a_non_blocking_call_has_no_deadline_and_never_shuts_the_gate() -> None:
    p = protocol(background=("lookup",))
    effects = p.receive(tool_call("bg", name="lookup"), 1.0)
    assert gate_changes(effects) == []
    assert BackgroundChanged((("bg", "lookup"),)) in effects
    assert p.offer("audio", 640, 1.5)
    assert p.tick(100.0) == []
    assert p.tool_finished("bg", True, {"ok": 1}, 2.0) == [BackgroundChanged(())]


def test_an_unanswerable_call_keeps_the_gate_shut_and_replaces_the_connection() -> None:
    p = protocol()
    p.receive(tool_call("c1"), 1.0)
    assert p.tool_finished("c1", False, {"ok": 1}, 2.0) == []
    assert p.gate.shut
    [close] = p.tick(1.1)
    assert isinstance(close, CloseConnection)
    assert close.cause == "unanswered"


def test_a_repeated_call_id_is_not_run_twice() -> None:
    p = protocol()
    p.receive(tool_call("c1"), 1.0)
    assert p.receive(tool_call("c1"), 1.1) == []
    assert p.stats.tool_calls == 1


def test_a_call_replayed_after_a_resumption_gets_its_first_answer() -> None:
    p = protocol()
    p.receive(tool_call("c1"), 1.0)
    # The tool ran (its relay switched) but the connection dropped before the answer left.
    assert p.tool_finished("c1", False, {"on": True}, 1.2) == []
    p.closed()
    p.opened(2.0)
    effects = p.receive(tool_call("c1"), 2.5)
    assert effects == [GateChanged(True, (("c1", "set_relay"),)), AnswerAgain("c1", {"on": True})]
    assert p.tool_finished("c1", True, {"on": True}, 2.6) == [GateChanged(False)]


def test_a_stale_replay_runs_again_only_when_the_tool_is_idempotent() -> None:
    p = protocol(idempotent=("get_outputs",))
    p.receive(tool_call("r1", name="get_outputs"), 1.0)
    p.receive(tool_call("w1"), 1.0)
    p.tool_finished("r1", True, {"on": False}, 1.1)
    p.tool_finished("w1", True, {"on": True}, 1.1)
    p.closed()
    p.opened(2.0)
    later = 1.1 + ANSWER_FRESH_S + 1
    effects = p.receive(tool_call("r1", name="get_outputs"), later)
    assert StartTools((("r1", "get_outputs", {}),)) in effects
    effects = p.receive(tool_call("w1"), later)
    assert AnswerAgain("w1", {"on": True}) in effects
    assert not [e for e in effects if isinstance(e, StartTools)]


def test_only_the_newest_answers_are_remembered() -> None:
    p = protocol()
    for i in range(REMEMBERED_ANSWERS + 1):
        p.receive(tool_call(f"c{i}"), 1.0)
        p.tool_finished(f"c{i}", True, {"i": i}, 1.0)
    p.closed()
    assert StartTools((("c0", "set_relay", {}),)) in p.receive(tool_call("c0"), 2.0)
    assert AnswerAgain("c1", {"i": 1}) in p.receive(tool_call("c1"), 2.0)


def test_go_away_closes_at_the_first_safe_point() -> None:
    p = protocol()
    p.receive(ServerMessage(size=0, resumption=ResumptionUpdate("h1", resumable=True)), 0.5)
    p.receive(tool_call("c1"), 1.0)
    assert p.receive(ServerMessage(size=0, go_away_s=10.0), 1.1) == []
    effects = p.tool_finished("c1", True, {"ok": 1}, 2.0)
    assert effects == [GateChanged(False)]
    p.receive(ServerMessage(size=0, resumption=ResumptionUpdate("h2", resumable=True)), 1.3)
    assert p.tick(1.4) == []
    [close] = p.receive(ServerMessage(size=0), 1.5)
    assert isinstance(close, CloseConnection)
    assert close.cause == "go-away"


# -- every interleaving: hypothesis drives the events the race test drives over a socket ----
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from(["a", "b", "c"]), st.booleans()),
        st.tuples(st.just("answer"), st.sampled_from(["a", "b", "c"]), st.booleans()),
        st.tuples(st.just("cancel"), st.sampled_from(["a", "b", "c"]), st.booleans()),
        st.tuples(st.just("speak"), st.sampled_from(["on", "off"]), st.booleans()),
        st.tuples(st.just("audio"), st.just(""), st.booleans()),
        st.tuples(st.just("tick"), st.just(""), st.booleans()),
        st.tuples(st.just("close"), st.just(""), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_no_realtime_input_leaves_while_a_blocking_call_is_awaited(
    events: list[tuple[str, str, bool]],
) -> None:
    p = protocol(background=("lookup",))
    now = 0.0
    shut_seen = False
    for kind, arg, flag in events:
        now += 1.0
        blocking_awaited = any(c.blocking for c in p.calls)
        assert p.gate.shut == blocking_awaited
        effects: list[Effect] = []
        if kind == "call":
            effects = p.receive(tool_call(arg, name="set_relay" if flag else "lookup"), now)
        elif kind == "answer":
            effects = p.tool_finished(arg, flag, {"result": arg}, now)
        elif kind == "cancel":
            effects = p.receive(ServerMessage(size=0, cancelled_ids=(arg,)), now)
        elif kind == "speak":
            signal = p.activity(arg == "on")
            assert signal is None or not blocking_awaited
        elif kind == "audio":
            assert p.offer("audio", 640, now) == (not blocking_awaited)
        elif kind == "tick":
            effects = p.tick(now)
        else:
            effects = p.closed()
            p.opened(now)
        for effect in effects:
            if isinstance(effect, GateChanged):
                # The gate opens only after it shut (a second toolCall shuts it again for
                # its own calls), and never twice in a row.
                assert effect.shut or shut_seen
                assert effect.shut == p.gate.shut
                shut_seen = effect.shut
            if isinstance(effect, SendSignal):
                assert not p.gate.shut
    assert p.stats.sent_while_shut == 0
