"""A blocking call is answered (result or error) or cancelled before the gate opens."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import pytest
from google.genai import types

from services.live.dispatch import ToolDispatcher
from services.live.inbound import FunctionCall, ServerMessage
from services.live.protocol import GateChanged, LiveProtocol, StartTools
from services.live.session import LiveSession
from services.tools.registry import ToolConfigError, ToolOutcome, ToolRegistry, ToolSpec
from tests.conftest import API_KEY, EmulatorFactory
from tests.services.live.harness import Recorder, running, settings_for, speak, tool


class BrokenValidation(ToolRegistry):
    """A registry whose argument validation raises (as a schema that cannot be evaluated
    would): the narrowest seam that makes validation itself fail."""

    async def call(self, name: str, args: Mapping[str, Any] | None) -> ToolOutcome:
        raise RuntimeError("PointerToNowhere: '/$defs/room' does not exist")


class Sequence(Recorder):
    """Records results and gate changes in the order they happened."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[str, Any]] = []

    def on_gate(self, shut: bool, calls: tuple[tuple[str, str], ...]) -> None:
        self.order.append(("gate", "shut" if shut else "open"))
        super().on_gate(shut, calls)

    def on_tool_result(self, call_id: str, name: str, payload: dict[str, Any], ms: float) -> None:
        self.order.append(("result", payload))
        super().on_tool_result(call_id, name, payload, ms)


async def noop(args: dict[str, Any]) -> str:
    return "ok"


async def test_a_raise_in_validation_is_answered_with_an_error_before_the_gate_opens(
    emulator_factory: EmulatorFactory,
) -> None:
    scenario = {
        "turns": [
            {"tool_calls": [{"name": "set_light", "args": {"room": "x"}}], "reply": "Sorry."},
            {"reply": "Next."},
        ]
    }
    async with emulator_factory(scenario) as em:
        rec = Sequence()
        registry = BrokenValidation([tool("set_light", noop)])
        session = LiveSession(settings_for(em), registry, API_KEY, rec, rng=random.Random(0))
        async with running(session):
            await speak(session)
            await rec.wait_turns(1)
            await speak(session)
            await rec.wait_turns(2)
    assert rec.order == [
        ("gate", "shut"),
        ("result", {"error": "set_light failed: RuntimeError"}),
        ("gate", "open"),
    ]
    assert em.trace.select("violation") == []
    call = em.trace.select("out", kind="toolCall")[0]
    [response] = em.trace.select("in", kind="toolResponse")
    assert response["ids"] == call["ids"]
    after = [r for r in em.trace.select("in") if r["t"] > call["t"] and r["kind"] != "toolResponse"]
    assert after
    assert all(r["pending"] == 0 for r in after)
    assert session.closures == type(session.closures)()


async def test_a_call_that_cannot_be_answered_keeps_the_gate_shut() -> None:
    protocol = LiveProtocol(
        manual_activity=True,
        resumption=True,
        stall_timeout_s=10.0,
        go_away_margin_s=1.0,
        blocking=lambda name: True,
        time_limit_s=lambda name: 5.0,
    )
    gate = protocol.gate
    opened = asyncio.Event()
    given_up = asyncio.Event()
    unanswerable: list[str] = []

    def give_up(call_id: str) -> None:
        unanswerable.append(call_id)
        given_up.set()

    async def send(response: types.FunctionResponse, size: int) -> bool:
        raise ValueError("the SDK refused the response")

    async def finished(call_id: str, answered: bool, payload: dict[str, Any] | None) -> None:
        effects = protocol.tool_finished(call_id, answered, payload, 0.0)
        if any(isinstance(e, GateChanged) and not e.shut for e in effects):
            opened.set()
        if not answered:
            give_up(call_id)

    dispatcher = ToolDispatcher(
        ToolRegistry([tool("t", noop)]),
        awaited=protocol.awaited,
        send=send,
        finished=finished,
        on_result=lambda *_: None,
        cap_chars=1000,
        max_bytes=10_000,
    )
    call = FunctionCall(id="c1", name="t", args={})
    [start] = [
        e
        for e in protocol.receive(ServerMessage(size=0, tool_calls=(call,)), 0.0)
        if isinstance(e, StartTools)
    ]
    dispatcher.start(start.calls)
    async with asyncio.timeout(5):
        await given_up.wait()
    assert unanswerable == ["c1"]
    assert gate.shut
    assert not opened.is_set()


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (True, "must be a JSON schema object, not true"),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
            "does not resolve",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "https://x.test/s"}}}, "does not resolve"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}}, "regex"),
    ],
)
def test_a_schema_that_cannot_validate_is_refused_when_declared(schema: Any, problem: str) -> None:
    with pytest.raises(ToolConfigError, match=problem):
        ToolRegistry([ToolSpec("t", "", noop, schema)])


def test_a_schema_nested_thousands_deep_is_refused_without_recursing() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {}}
    node = schema
    for _ in range(3000):
        node["not"] = {}
        node = node["not"]
    with pytest.raises(ToolConfigError, match="nested deeper than 32"):
        ToolRegistry([ToolSpec("t", "", noop, schema)])


def test_a_local_recursive_ref_is_fine() -> None:
    schema = {
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/node"}},
        "$defs": {"node": {"type": "object", "properties": {"kids": {"$ref": "#/$defs/node"}}}},
    }
    assert "t" in ToolRegistry([ToolSpec("t", "", noop, schema)])
