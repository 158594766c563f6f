"""A conversation through the real SDK against a stand-in that sends one malformed frame.

Shared by the hostile-frame tests and ``make fuzz``: the model calls a tool, the stand-in
sends the bad frame while the call is pending, and the user then asks for a second call.
:func:`judge` lists what the daemon got wrong, if anything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from services.emulator.server import Emulator
from services.live.session import LiveSession
from tests.conftest import EmulatorFactory
from tests.services.live.harness import Recorder, new_session, running, speak, tool

REALTIME = frozenset({"audio", "activityStart", "activityEnd", "audioStreamEnd"})
LIGHT = {"name": "set_output", "args": {"name": "kitchen", "on": True}}


@dataclass
class Outcome:
    """What happened: the session, its events, the stand-in's trace, and whether it ended."""

    session: LiveSession
    recorder: Recorder
    em: Emulator
    session_ended: BaseException | str | None


def scenario_with(fault: dict[str, Any]) -> dict[str, Any]:
    """Two tool turns; ``fault`` (a hostile fault) fires while the first call is pending."""
    return {
        "turns": [
            {"tool_calls": [LIGHT], "reply": "Done.", "faults": [{"kind": "hostile", **fault}]},
            {"tool_calls": [LIGHT], "reply": "Again."},
        ]
    }


async def converse(
    emulator_factory: EmulatorFactory, fault: dict[str, Any], **settings: Any
) -> Outcome:
    """Run the two-turn conversation with ``fault``; waits for both replies (bounded)."""

    async def light(args: dict[str, Any]) -> dict[str, Any]:
        # Long enough for the bad frame to arrive while the call is pending.
        await asyncio.sleep(0.05)
        return {"on": args.get("on")}

    async with emulator_factory(scenario_with(fault)) as em:
        rec = Recorder()
        session = new_session(em, [tool("set_output", light)], rec, **settings)
        ended: BaseException | str | None = None
        async with running(session) as task:
            try:
                await speak(session)
                await rec.wait_turns(1, within=15)
                await speak(session)
                await rec.wait_turns(2, within=15)
            except TimeoutError:
                ended = "timed out waiting for the replies"
            if task.done():
                ended = task.exception() if not task.cancelled() else "cancelled"
    return Outcome(session, rec, em, ended)


def judge(outcome: Outcome, tolerated: bool) -> list[str]:
    """Every way the daemon mishandled the frame; empty when it did right."""
    problems: list[str] = []
    em, session = outcome.em, outcome.session
    if outcome.session_ended is not None:
        problems.append(f"the session ended: {outcome.session_ended!r}")
    violations = em.trace.select("violation")
    if violations:
        problems.append(f"protocol violations: {[v['rule'] for v in violations]}")
    early = [r["kind"] for r in em.trace.select("in") if r["kind"] in REALTIME and r["pending"]]
    if early:
        problems.append(f"realtime input while a call was pending: {early}")
    answered = [i for r in em.trace.select("in", kind="toolResponse") for i in r["ids"]]
    last_call = em.trace.select("out", kind="toolCall")[-1:]
    if not last_call or not set(last_call[0]["ids"]) <= set(answered):
        problems.append("the last tool call was not answered")
    closes = [c for c in em.trace.select("close", by="client") if c["code"] != 1000]
    errors = sum(session.stats.protocol_errors.values())
    if tolerated:
        if errors or closes:
            problems.append(f"a tolerated frame closed the connection: {closes}")
    else:
        if errors != 1:
            problems.append(f"{errors} protocol errors counted, not 1")
        if not closes or closes[0]["code"] not in (1002, 1007, 1008, 1009):
            problems.append(f"not closed as a protocol error by the client: {closes}")
        resumed = [s["resumed"] for s in em.trace.select("in", kind="setup")]
        if resumed[1:2] != [True]:
            problems.append(f"no resumed reconnection after the error: {resumed}")
    return problems
