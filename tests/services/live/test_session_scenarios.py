"""The Live session against the stand-in, through the real SDK: every scenario of the issue."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from services.emulator import rules
from services.emulator.server import RESUMPTION_MODES, Emulator, Resumption
from services.emulator.speech import OUTPUT_RATE, synthesize
from services.live.diagnostics import Action
from services.live.session import ConnectionState, LiveSession, LiveSessionFatal
from services.tools.registry import ToolSpec
from tests.conftest import EmulatorFactory
from tests.services.live.harness import FRAME, Recorder, new_session, running, speak, tool


def assert_clean(em: Emulator) -> None:
    assert em.trace.select("violation") == []


def responses(em: Emulator) -> list[dict[str, Any]]:
    return em.trace.select("in", kind="toolResponse")


async def set_output(args: dict[str, Any]) -> dict[str, Any]:
    return {"name": args.get("name"), "on": args.get("on")}


LIGHT = {"name": "set_output", "args": {"name": "kitchen", "on": True}}


async def slow_output(args: dict[str, Any]) -> dict[str, Any]:
    """A tool slow enough for a fault to strike while its call is pending."""
    await asyncio.sleep(0.2)
    return await set_output(args)


async def test_tool_call_while_the_user_is_speaking(emulator_factory: EmulatorFactory) -> None:
    async def slow_light(args: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return await set_output(args)

    scenario = {"turns": [{"tool_calls": [LIGHT], "during_speech_ms": 100, "reply": "Done."}]}
    async with emulator_factory(scenario, grace_ms=0) as em:
        rec = Recorder()
        session = new_session(em, [tool("set_output", slow_light)], rec)
        async with running(session):
            # The user keeps talking well past the moment the call arrives.
            await speak(session, frames=60, pace_s=0.005)
            await rec.wait_turns(1)
    assert_clean(em)
    assert rec.reply_text() == "Done."
    assert session.stats.sent_while_shut == 0
    assert session.gate.dropped["audio"] > 0
    # The gate opened again, and the activityEnd held back during it was sent afterwards.
    assert [shut for shut, _ in rec.gate] == [True, False]
    kinds = [r["kind"] for r in em.trace.select("in")]
    assert kinds.count("activityStart") == kinds.count("activityEnd") == 1
    assert kinds.index("toolResponse") < kinds.index("activityEnd")


async def test_two_calls_in_one_message_run_concurrently(emulator_factory: EmulatorFactory) -> None:
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def waits_for(me: str, other: str) -> Any:
        async def handler(args: dict[str, Any]) -> str:
            started[me].set()
            # Deadlocks (and times out) unless both calls run at once.
            await started[other].wait()
            return me

        return handler

    scenario = {"turns": [{"tool_calls": [{"name": "a"}, {"name": "b"}], "reply": "Both."}]}
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        tools = [tool("a", waits_for("a", "b")), tool("b", waits_for("b", "a"))]
        session = new_session(em, tools, rec)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
    assert_clean(em)
    assert sorted(p["output"] for _, _, p in rec.results) == ["a", "b"]
    call = em.trace.select("out", kind="toolCall")[0]
    answered = [i for r in responses(em) for i in r["ids"]]
    assert sorted(answered) == sorted(call["ids"])


async def test_cancellation_stops_the_tool_and_sends_nothing(
    emulator_factory: EmulatorFactory,
) -> None:
    cancelled = asyncio.Event()

    async def slow(args: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scenario = {
        "turns": [
            {"tool_calls": [{"name": "slow"}], "cancel_after_ms": 50, "reply": "x"},
            {"reply": "Next."},
        ]
    }
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [tool("slow", slow, timeout_s=10)], rec)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
            assert cancelled.is_set()
            assert not session.gate.shut
            await speak(session)
            await rec.wait_turns(2)
    assert_clean(em)
    assert responses(em) == []
    assert rec.reply_text() == "Next."


@pytest.mark.parametrize(
    ("handler_kind", "error"),
    [("raises", "relay failed: coil stuck"), ("hangs", "relay did not finish within 0.1 s")],
)
async def test_failing_tools_become_error_responses(
    emulator_factory: EmulatorFactory, handler_kind: str, error: str
) -> None:
    async def handler(args: dict[str, Any]) -> None:
        if handler_kind == "raises":
            raise OSError("coil stuck")
        await asyncio.Event().wait()

    scenario = {"turns": [{"tool_calls": [{"name": "relay"}], "reply": "Sorry."}]}
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [tool("relay", handler, timeout_s=0.1)], rec)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
    assert_clean(em)
    assert [p for _, _, p in rec.results] == [{"error": error}]
    assert not session.gate.shut


async def test_an_oversized_result_is_capped_before_it_leaves(
    emulator_factory: EmulatorFactory,
) -> None:
    async def big(args: dict[str, Any]) -> str:
        return "word " * 5000

    scenario = {"turns": [{"tool_calls": [{"name": "big"}], "reply": "ok"}]}
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [tool("big", big)], rec, response_cap_chars=1000)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
    assert_clean(em)
    [(_, _, payload)] = rec.results
    assert payload["truncated"] is True
    assert "[truncated:" in payload["output"]
    assert responses(em)[0]["size"] < 1500


def light_then_1011(at: str, after_ms: int = 0) -> dict[str, Any]:
    """One turn that calls the light and replies, with a 1011 at ``at``."""
    fault = {"kind": "close", "code": 1011, "at": at, "after_ms": after_ms}
    return {"turns": [{"tool_calls": [LIGHT], "reply": "The light is on.", "faults": [fault]}]}


async def converse_once(em: Emulator, spec: ToolSpec, rec: Recorder) -> LiveSession:
    """Speak one request, and wait for the model's turn to complete."""
    session = new_session(em, [spec], rec)
    async with running(session):
        await speak(session)
        await rec.wait_turns(1)
    return session


async def test_1011_while_a_call_is_pending_resumes_and_finishes(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def slow_light(args: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return await set_output(args)

    scenario = light_then_1011("tool_pending", after_ms=50)
    caplog.set_level(logging.INFO, logger="services.live")
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = await converse_once(em, tool("set_output", slow_light), rec)
    assert_clean(em)
    assert rec.reply_text() == "The light is on."
    assert calls == 2
    [report] = session.closures
    assert (report.code, report.reason, report.action) == (
        1011,
        rules.REASON_INTERNAL,
        Action.RESUME,
    )
    assert report.context.state == "tool-pending: set_output"
    setups = em.trace.select("in", kind="setup")
    assert [s["resumed"] for s in setups] == [False, True]
    assert len({s["conv"] for s in setups}) == 1
    [record] = [r for r in caplog.records if getattr(r, "CLOSE_CODE", None) == 1011]
    assert record.levelno == logging.WARNING
    assert record.LIVE_STATE == "tool-pending: set_output"  # type: ignore[attr-defined]
    assert record.PENDING_CALLS.startswith("set_output:function-call-")  # type: ignore[attr-defined]
    assert "while a tool call was pending" in record.LIKELY_CAUSE  # type: ignore[attr-defined]
    assert "last sent: " in record.getMessage()
    assert "activityEnd" in record.getMessage()


async def test_a_call_replayed_with_its_id_while_its_tool_runs_runs_it_once(
    emulator_factory: EmulatorFactory,
) -> None:
    calls = 0
    rec = Recorder()

    async def light_until_replayed(args: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        # Still running when the replayed toolCall has shut the gate a second time.
        await rec.wait_for(lambda: [shut for shut, _ in rec.gate].count(True) >= 2)
        return await set_output(args)

    scenario = light_then_1011("tool_pending", after_ms=50)
    async with emulator_factory(scenario, replay_ids="same") as em:
        await converse_once(em, tool("set_output", light_until_replayed, timeout_s=15.0), rec)
    assert_clean(em)
    assert rec.reply_text() == "The light is on."
    first, replayed = em.trace.select("out", kind="toolCall")
    assert first["ids"] == replayed["ids"]
    assert calls == 1
    [answer] = responses(em)
    assert answer["ids"] == first["ids"]


async def test_a_call_replayed_after_its_answer_gets_that_answer_without_a_second_run(
    emulator_factory: EmulatorFactory,
) -> None:
    calls = 0

    async def light(args: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return await set_output(args)

    # The 1011 strikes after the answer, before the reply: the handle taken when the user's
    # turn was committed replays the turn, toolCall and all.
    rec = Recorder()
    async with emulator_factory(light_then_1011("reply"), replay_ids="same") as em:
        await converse_once(em, tool("set_output", light), rec)
    assert_clean(em)
    assert rec.reply_text() == "The light is on."
    first, replayed = em.trace.select("out", kind="toolCall")
    assert first["ids"] == replayed["ids"]
    assert calls == 1
    answers = responses(em)
    assert [a["ids"] for a in answers] == [first["ids"], first["ids"]]
    assert answers[0]["size"] == answers[1]["size"]


async def test_go_away_mid_turn_reconnects_seamlessly(emulator_factory: EmulatorFactory) -> None:
    scenario = {
        "turns": [
            {
                "reply": "one two three four five six",
                "faults": [{"kind": "go_away", "at": "reply", "time_left_ms": 3000}],
            },
            {"reply": "Still here."},
        ]
    }
    async with emulator_factory(scenario, pace=0.2) as em:
        rec = Recorder()
        session = new_session(em, [], rec)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
            await rec.wait_for(lambda: len(session.closures) == 1 and session.connected)
            await speak(session)
            await rec.wait_turns(2)
    assert_clean(em)
    assert rec.reply_text().endswith("Still here.")
    closes = em.trace.select("close")
    assert closes[0]["by"] == "client"
    assert closes[0]["code"] == 1000
    [report] = session.closures
    assert report.context.local_cause == "go-away"
    assert len({s["conv"] for s in em.trace.select("in", kind="setup")}) == 1


@pytest.mark.parametrize("resumption", RESUMPTION_MODES)
async def test_go_away_shortly_before_a_reply_ends_lets_the_turn_finish(
    emulator_factory: EmulatorFactory, resumption: Resumption
) -> None:
    reply = "The light in the kitchen is now on and the hall stays dark."
    # The reply takes about 2.5 s to stream: it ends 0.5 s into the session's 3 s margin before
    # the 5 s deadline, so only a rotation that waits for the turn keeps the request; the 2.5 s
    # left before the deadline are room for a busy machine, not part of the check.
    seconds = len(synthesize(reply)) / (2 * OUTPUT_RATE)
    scenario = {
        "turns": [
            {"reply": reply, "faults": [{"kind": "go_away", "at": "reply", "time_left_ms": 5000}]},
            {"reply": "Still here."},
        ]
    }
    async with emulator_factory(scenario, pace=2.5 / seconds, resumption=resumption) as em:
        rec = Recorder()
        session = new_session(em, [], rec, go_away_margin_s=3.0)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
            assert rec.reply_text() == reply
            await rec.wait_for(lambda: len(session.closures) == 1 and session.connected)
            await speak(session)
            await rec.wait_turns(2)
    assert_clean(em)
    assert rec.reply_text() == f"{reply} Still here."
    [report] = session.closures
    assert report.context.local_cause == "go-away"
    assert "safe point" in report.cause
    out = em.trace.select("out")
    first_close = em.trace.select("close")[0]
    assert first_close["by"] == "client"
    assert [r["kind"] for r in out if r["conn"] == 1].count("serverContent.turnComplete") == 1


@pytest.mark.parametrize("resumption", RESUMPTION_MODES)
async def test_resuming_from_a_handle_older_than_the_turn_says_the_request_may_be_lost(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture, resumption: Resumption
) -> None:
    # The call comes while the user speaks, before their turn is committed: the newest handle
    # is the one from the setup, older than the turn the 1011 cuts off.
    turn = {
        "tool_calls": [LIGHT],
        "during_speech_ms": 60,
        "reply": "Done.",
        "faults": [{"kind": "close", "code": 1011, "at": "tool_pending", "after_ms": 20}],
    }
    caplog.set_level(logging.INFO, logger="services.live")
    async with emulator_factory({"turns": [turn]}, resumption=resumption) as em:
        rec = Recorder()
        session = new_session(em, [tool("set_output", slow_output)], rec)
        async with running(session):
            await speak(session, frames=40, pace_s=0.005)
            await rec.wait_for(lambda: len(session.closures) == 1 and session.connected)
    assert_clean(em)
    assert [r.code for r in session.closures] == [1011]
    lost = [r for r in caplog.records if "may lose that request" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING


async def test_resuming_from_a_handle_taken_after_the_turn_says_nothing_is_lost(
    emulator_factory: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    turn = {
        "tool_calls": [LIGHT],
        "reply": "Done.",
        "faults": [{"kind": "close", "code": 1011, "at": "tool_pending", "after_ms": 20}],
    }
    caplog.set_level(logging.INFO, logger="services.live")
    async with emulator_factory({"turns": [turn]}) as em:
        rec = Recorder()
        session = new_session(em, [tool("set_output", slow_output)], rec)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
    assert [r.code for r in session.closures] == [1011]
    assert not [r for r in caplog.records if "may lose that request" in r.getMessage()]


async def test_a_1011_long_after_a_tool_response_is_not_blamed_on_it(
    emulator_factory: EmulatorFactory,
) -> None:
    turn = {
        "tool_calls": [LIGHT],
        "reply": "Done.",
        "faults": [{"kind": "close", "code": 1011, "at": "reply", "after_ms": 1500}],
    }
    async with emulator_factory({"turns": [turn]}) as em:
        rec = Recorder()
        session = new_session(em, [tool("set_output", set_output)], rec)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
    [report] = session.closures
    assert report.code == 1011
    assert [f.kind for f in report.context.last_sent][-1:] == ["toolResponse"]
    assert "tool response" not in report.cause


async def test_a_stale_handle_starts_a_fresh_session(emulator_factory: EmulatorFactory) -> None:
    scenario = {
        "turns": [
            {"reply": "First.", "faults": [{"kind": "expire_handles", "at": "reply"}]},
            {"reply": "Second.", "faults": [{"kind": "close", "code": 1011, "at": "turn_start"}]},
        ]
    }
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [], rec)
        first_id = session.session_id
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
            await speak(session)
            await rec.wait_for(lambda: len(session.closures) == 2 and session.connected)
            await speak(session)
            await rec.wait_turns(2)
    actions = [r.action for r in session.closures]
    assert actions == [Action.RESUME, Action.FRESH]
    assert session.closures[1].reason == rules.REASON_SESSION_NOT_FOUND
    assert session.session_id != first_id
    convs = [s["conv"] for s in em.trace.select("in", kind="setup")]
    assert convs[0] != convs[-1]
    violations = em.trace.select("violation")
    assert [v["rule"] for v in violations] == ["stale-resumption-handle"]


async def test_wrong_key_gives_a_clear_error_after_bounded_visible_attempts(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory({"turns": []}) as em:
        rec = Recorder()
        session = new_session(em, [], rec, api_key="wrong-key")
        with pytest.raises(LiveSessionFatal) as info:
            async with asyncio.timeout(10):
                await session.run()
    assert "API key is not valid" in str(info.value)
    assert len(em.trace.select("in", kind="setup")) == 0
    assert len([v for v in em.trace.select("violation") if v["rule"] == "bad-api-key"]) == 3
    states = [s.state for s in rec.statuses]
    assert states.count(ConnectionState.RECONNECTING) == 2
    delays = [s.delay_s for s in rec.statuses if s.state is ConnectionState.RECONNECTING]
    assert all(d is not None and d > 0 for d in delays)
    assert ConnectionState.ERROR in states


async def test_a_silent_stall_is_noticed_and_the_turn_resumed(
    emulator_factory: EmulatorFactory,
) -> None:
    scenario = {
        "turns": [
            {"reply": "Back again.", "faults": [{"kind": "stall", "at": "reply", "stall_s": 30}]}
        ]
    }
    async with emulator_factory(scenario) as em:
        rec = Recorder()
        session = new_session(em, [], rec, stall_timeout_s=0.3)
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
    assert_clean(em)
    assert rec.reply_text() == "Back again."
    [report] = session.closures
    assert report.context.local_cause == "stall"
    assert "silent stall" in report.cause


async def test_unreachable_service_keeps_retrying_with_back_off(
    emulator_factory: EmulatorFactory,
) -> None:
    async with emulator_factory({"turns": []}) as em:
        settings_port = em.port
    rec = Recorder()
    # The stand-in has stopped: the port refuses connections.
    session = new_session(em, [], rec)
    assert em.port == settings_port
    task = asyncio.create_task(session.run())
    try:
        await rec.wait_for(lambda: len(session.closures) >= 3)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert all(r.context.local_cause == "unreachable" for r in session.closures)
    assert all(r.action is Action.RESUME for r in session.closures)


async def test_input_is_never_sent_while_offline(emulator_factory: EmulatorFactory) -> None:
    async with emulator_factory({"turns": []}) as em:
        session = new_session(em, [], Recorder())
        assert await session.send_audio(FRAME) is False
        assert session.stats.frames_offline == 1
