"""The race and fault families: seeded conversations run by the three clients.

Every run is a two-turn conversation against a stand-in of its own, through the real SDK. A
seed fixes the scenario and the user's timing, and each client gets the same seeds, so the
three columns of the report compare like with like:

* ``pi-live-voice``: :class:`~services.live.session.LiveSession`, with manual activity as the
  daemon uses it: ``activityStart``, speech, ``activityEnd``, a few more frames offered.
* ``cookbook`` and ``seed-fix``: the clients of :mod:`services.emulator.reference_clients`
  with an open microphone (speech, then silence streamed until the answer has come) and the
  service's automatic activity detection, as the getting-started example has it.

Race runs have the model call one to three tools per message, fast, slow or failing, often
while the user is still speaking. Fault runs add one service fault: a 1011 closure while a
call is pending, a ``goAway`` mid-turn, resumption handles that went stale, or a silent stall.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.standin import (
    API_KEY,
    plain_config,
    resume_times_ms,
    sdk_client,
    server_closures,
    standin,
    turns_answered,
)
from services.emulator.reference_clients import Tool, close_code, run_cookbook, run_seed_fix
from services.emulator.server import Emulator
from services.emulator.trace import TraceRecord
from services.live.diagnostics import Action
from services.live.session import ConnectionState, ConnectionStatus, LiveSession, SessionEvents
from services.live.settings import LiveSettings
from services.tools.registry import ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

CLIENTS = ("pi-live-voice", "cookbook", "seed-fix")
FAULTS = ("close-1011-pending", "go-away-mid-turn", "stale-handle", "silent-stall")
TOOL_KINDS = ("fast", "slow", "failing")
MODEL = "gemini-live-bench"
SILENCE = b"\x00\x00" * 320  # 20 ms at 16 kHz
# 20 ms of a 400 Hz square wave at ±4000, well above the stand-in's speech threshold (RMS 500).
LOUD = (b"\xa0\x0f" * 20 + b"\x60\xf0" * 20) * 8
REALTIME = frozenset({"audio", "activityStart", "activityEnd", "audioStreamEnd"})
# The stand-in's answer to a resumption with an expired handle: expected in that fault.
STALE_REJECTION = "stale-resumption-handle"
# The session notices a silent stall after this long: short so stall runs take seconds.
STALL_TIMEOUT_S = 3.0
RACE_LIMIT_S = 20.0


@dataclass(frozen=True)
class UserTurn:
    """One utterance: ``speech_frames`` of speech, then ``tail_frames`` more offered by
    pi-live-voice's mic after its ``activityEnd`` (the open-mic clients stream silence on)."""

    speech_frames: int
    tail_frames: int


@dataclass(frozen=True)
class RunPlan:
    """Everything a seed decides about one run."""

    family: str
    seed: int
    fault: str | None
    scenario: dict[str, Any]
    user_turns: tuple[UserTurn, ...]
    frame_gap_s: float
    slow_s: float
    limit_s: float

    @property
    def early_calls(self) -> int:
        """Turns whose toolCall comes while the user is still speaking."""
        return sum(1 for t in self.scenario["turns"] if "during_speech_ms" in t)


@dataclass(frozen=True)
class Outcome:
    """What one client did with one plan."""

    family: str
    client: str
    seed: int
    fault: str | None
    finished: bool
    hung: bool
    closures: tuple[int, ...]  # codes of the connections the stand-in closed, in order
    violations: tuple[str, ...]  # the rules the stand-in saw broken
    late_input: int  # realtime frames that reached it while a call was pending, past grace
    gated: int  # realtime input the client itself held back (pi-live-voice's gate)
    early_calls: int
    error: str | None
    seconds: float
    resumed_ms: tuple[float, ...]  # each 1011 → the conversation resumed on the next connection


def _turn(rng: random.Random, speech_frames: int, calls: list[str], early: bool) -> dict[str, Any]:
    turn: dict[str, Any] = {
        "tool_calls": [{"name": name} for name in calls],
        "reply": "ok",
        "tool_delay_ms": rng.randrange(0, 40),
    }
    if early:
        # The stand-in counts speech from its onset; the call must come before the speech ends.
        turn["during_speech_ms"] = rng.randrange(20, max(40, speech_frames * 20 - 100), 20)
    return turn


def race_plan(seed: int) -> RunPlan:
    """A race run: one to three fast, slow or failing calls per message, often mid-speech."""
    rng = random.Random(f"race:{seed}")
    turns, user = [], []
    for _ in range(2):
        speech = rng.randrange(15, 45)
        calls = [rng.choice(TOOL_KINDS) for _ in range(rng.choice((1, 2, 2, 3)))]
        turns.append(_turn(rng, speech, calls, early=rng.random() < 0.75))
        user.append(UserTurn(speech, rng.randrange(0, 10)))
    return RunPlan(
        family="race",
        seed=seed,
        fault=None,
        scenario={"name": f"race-{seed}", "grace_ms": 100, "turns": turns},
        user_turns=tuple(user),
        frame_gap_s=rng.choice((0.01, 0.015, 0.02)),
        slow_s=rng.uniform(0.05, 0.4),
        limit_s=RACE_LIMIT_S,
    )


def fault_plan(fault: str, seed: int, limit_s: float) -> RunPlan:
    """A fault run: calls after the user's turn (so it is committed and can be resumed),
    with ``fault`` injected on one of the two turns; unfinished after ``limit_s``, it hung."""
    rng = random.Random(f"{fault}:{seed}")
    turns, user = [], []
    for _ in range(2):
        speech = rng.randrange(15, 45)
        calls = ["slow", *(rng.choice(("fast", "slow")) for _ in range(rng.randrange(2)))]
        turns.append(_turn(rng, speech, calls, early=False))
        user.append(UserTurn(speech, rng.randrange(0, 10)))
    at = rng.randrange(2)
    after_ms = rng.randrange(0, 40)
    if fault == "close-1011-pending":
        turns[at]["faults"] = [{"kind": "close", "code": 1011, "after_ms": after_ms}]
    elif fault == "go-away-mid-turn":
        turns[at]["faults"] = [{"kind": "go_away", "time_left_ms": rng.randrange(200, 800)}]
    elif fault == "stale-handle":
        turns[1]["faults"] = [
            {"kind": "expire_handles", "at": "turn_start"},
            {"kind": "close", "code": 1011, "after_ms": after_ms},
        ]
    elif fault == "silent-stall":
        turns[at]["faults"] = [{"kind": "stall", "at": "reply", "stall_s": 60.0}]
    else:
        raise ValueError(f"unknown fault {fault!r}")
    return RunPlan(
        family="faults",
        seed=seed,
        fault=fault,
        scenario={"name": f"{fault}-{seed}", "grace_ms": 100, "turns": turns},
        user_turns=tuple(user),
        frame_gap_s=rng.choice((0.01, 0.015, 0.02)),
        # Slower than the stand-in's fault delay, so the fault finds the call still pending.
        slow_s=rng.uniform(0.1, 0.4),
        limit_s=limit_s,
    )


def _behaviour(kind: str, slow_s: float) -> Callable[[], Awaitable[str]]:
    async def fast() -> str:
        return "done"

    async def slow() -> str:
        await asyncio.sleep(slow_s)
        return "done slowly"

    async def failing() -> str:
        raise RuntimeError("device offline")

    return {"fast": fast, "slow": slow, "failing": failing}[kind]


def registry_tools(slow_s: float) -> list[ToolSpec]:
    """The tools as pi-live-voice declares them (a failure becomes an error payload)."""

    def spec(kind: str) -> ToolSpec:
        behaviour = _behaviour(kind, slow_s)

        async def handler(args: dict[str, Any]) -> str:
            return await behaviour()

        return ToolSpec(name=kind, description=f"a {kind} tool", handler=handler)

    return [spec(kind) for kind in TOOL_KINDS]


def reference_tools(slow_s: float) -> dict[str, Tool]:
    """The same tools for the reference clients; a failure is answered as an error payload
    rather than raised, so that their results reflect their gating, not their tool handling."""

    def tool(kind: str) -> Tool:
        behaviour = _behaviour(kind, slow_s)

        async def call() -> dict[str, Any]:
            try:
                return {"output": await behaviour()}
            except RuntimeError as exc:
                return {"error": str(exc)}

        return call

    return {kind: tool(kind) for kind in TOOL_KINDS}


def _late_input(records: list[TraceRecord]) -> int:
    return sum(
        1
        for r in records
        if r["event"] == "in"
        and r.get("kind") in REALTIME
        and r.get("pending", 0) > 0
        and not r.get("in_flight")
    )


def _violations(records: list[TraceRecord]) -> tuple[str, ...]:
    return tuple(str(r["rule"]) for r in records if r["event"] == "violation")


@dataclass
class Timeline:
    """What happened in one run, in monotonic seconds: for the timeline plot."""

    client: str
    seed: int
    frames: list[tuple[float, bool]] = field(default_factory=list)  # (offered at, sent)
    gate: list[tuple[float, bool]] = field(default_factory=list)  # (at, shut)
    records: list[TraceRecord] = field(default_factory=list)


class _Listener(SessionEvents):
    """Counts the session's turns and fresh starts, and wakes the driver on each."""

    def __init__(self, timeline: Timeline | None) -> None:
        self.turns = 0
        self.fresh = 0
        self.failed = False
        self.changed = asyncio.Event()
        self._timeline = timeline

    def on_connection(self, status: ConnectionStatus) -> None:
        if (
            status.state is ConnectionState.RECONNECTING
            and status.report is not None
            and status.report.action is Action.FRESH
        ):
            self.fresh += 1
        if status.state is ConnectionState.ERROR:
            self.failed = True
        self.changed.set()

    def on_gate(self, shut: bool, calls: tuple[tuple[str, str], ...]) -> None:
        if self._timeline is not None:
            self._timeline.gate.append((time.monotonic(), shut))

    def on_turn_complete(self) -> None:
        self.turns += 1
        self.changed.set()

    async def wait(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` holds; the caller bounds the wait."""
        while not done():
            self.changed.clear()
            await self.changed.wait()


def live_settings(em: Emulator) -> LiveSettings:
    """Session settings for ``em``: the shipped defaults, but a quicker stall watchdog and
    connect time-out."""
    return LiveSettings(
        model=MODEL,
        base_url=em.base_url,
        ca_file=em.settings.cert_out,
        connect_timeout_s=5.0,
        stall_timeout_s=STALL_TIMEOUT_S,
    )


async def _say(
    session: LiveSession, turn: UserTurn, gap_s: float, timeline: Timeline | None
) -> None:
    async def offer(frame: bytes) -> None:
        sent = await session.send_audio(frame)
        if timeline is not None:
            timeline.frames.append((time.monotonic(), sent))
        await asyncio.sleep(gap_s)

    await session.set_activity(True)
    for _ in range(turn.speech_frames):
        await offer(LOUD)
    await session.set_activity(False)
    for _ in range(turn.tail_frames):
        await offer(SILENCE)


async def _converse(
    session: LiveSession, events: _Listener, plan: RunPlan, timeline: Timeline | None
) -> None:
    await session.wait_connected()
    for index, turn in enumerate(plan.user_turns):
        # A fresh session (the handle went stale) lost the request: the user asks once more.
        for _ in range(2):
            fresh = events.fresh
            await _say(session, turn, plan.frame_gap_s, timeline)
            await events.wait(
                lambda: events.turns > index or events.fresh != fresh or events.failed  # noqa: B023
            )
            if events.failed:
                return
            if events.turns > index:
                break
            await session.wait_connected()


async def run_ours(plan: RunPlan, workdir: Path, timeline: Timeline | None = None) -> Outcome:
    """pi-live-voice's session through one plan."""
    started = time.monotonic()
    hung = False
    error = None
    async with standin(plan.scenario, workdir) as em:
        events = _Listener(timeline)
        # Building the SDK client loads TLS contexts (about 20 ms of CPU): off this loop, so
        # the conversations running on it are not held up by the bench's own set-up.
        session = await asyncio.to_thread(
            LiveSession,
            live_settings(em),
            ToolRegistry(registry_tools(plan.slow_s)),
            API_KEY,
            events,
            rng=random.Random(plan.seed),
        )
        task = asyncio.create_task(session.run(), name=f"bench-session-{plan.seed}")
        try:
            async with asyncio.timeout(plan.limit_s):
                await _converse(session, events, plan, timeline)
        except TimeoutError:
            hung = True
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # a fatal closure ends run() with LiveSessionFatal
                error = repr(exc)
        records = em.trace.select()
    if timeline is not None:
        timeline.records = records
    broken = _violations(records)
    if set(broken) - {STALE_REJECTION} or error:
        # The one client that must never be closed for a rule: name the seed to replay.
        log.warning(
            "pi-live-voice, %s seed %d: rules %s, error %s", plan.family, plan.seed, broken, error
        )
    return Outcome(
        family=plan.family,
        client="pi-live-voice",
        seed=plan.seed,
        fault=plan.fault,
        finished=not hung and error is None and events.turns >= len(plan.user_turns),
        hung=hung,
        closures=tuple(server_closures(records)),
        violations=broken,
        late_input=_late_input(records),
        gated=session.gated_frames(),
        early_calls=plan.early_calls,
        error=error,
        seconds=time.monotonic() - started,
        resumed_ms=tuple(resume_times_ms(records)),
    )


async def _open_mic(em: Emulator, plan: RunPlan) -> AsyncIterator[bytes]:
    """An open microphone: each utterance once the model answered the one before, silence
    in between and after, for at most the run's time limit."""
    budget = int(plan.limit_s / plan.frame_gap_s) + 1
    for index, turn in enumerate(plan.user_turns):
        while turns_answered(em) < index and budget > 0:
            budget -= 1
            yield SILENCE
            await asyncio.sleep(plan.frame_gap_s)
        for _ in range(turn.speech_frames):
            budget -= 1
            yield LOUD
            await asyncio.sleep(plan.frame_gap_s)
    while budget > 0:
        budget -= 1
        yield SILENCE
        await asyncio.sleep(plan.frame_gap_s)


async def run_reference(
    plan: RunPlan, client: str, workdir: Path, timeline: Timeline | None = None
) -> Outcome:
    """A reference client (``cookbook`` or ``seed-fix``) through one plan."""
    runner = {"cookbook": run_cookbook, "seed-fix": run_seed_fix}[client]
    started = time.monotonic()
    finished = hung = False
    error = None
    async with standin(plan.scenario, workdir) as em:
        sdk = await asyncio.to_thread(sdk_client, em)  # off the loop, as for pi-live-voice
        tools = reference_tools(plan.slow_s)
        try:
            async with (
                asyncio.timeout(plan.limit_s),
                sdk.aio.live.connect(model=MODEL, config=plain_config(tools)) as session,
            ):
                await runner(session, _open_mic(em, plan), tools, turns=len(plan.user_turns))
            finished = True
        except TimeoutError:
            hung = True
        except Exception as exc:  # the clients let every closure escape, as people's do
            code, reason = close_code(exc)
            error = f"{code} {reason}" if code is not None else reason
        records = em.trace.select()
    if timeline is not None:
        timeline.records = records
    return Outcome(
        family=plan.family,
        client=client,
        seed=plan.seed,
        fault=plan.fault,
        finished=finished,
        hung=hung,
        closures=tuple(server_closures(records)),
        violations=_violations(records),
        late_input=_late_input(records),
        gated=0,
        early_calls=plan.early_calls,
        error=error,
        seconds=time.monotonic() - started,
        resumed_ms=tuple(resume_times_ms(records)),
    )


async def run_one(plan: RunPlan, client: str, workdir: Path) -> Outcome:
    """``client`` through ``plan``."""
    if client == "pi-live-voice":
        return await run_ours(plan, workdir)
    return await run_reference(plan, client, workdir)


def timeline_seed() -> int:
    """A telling seed to draw: the first turn's two or more calls, one slow, come while the
    user is speaking."""
    for seed in range(10_000):
        first = race_plan(seed).scenario["turns"][0]
        names = [c["name"] for c in first["tool_calls"]]
        if "during_speech_ms" in first and len(names) >= 2 and "slow" in names:
            return seed
    return 0


async def race_timelines(seed: int, workdir: Path) -> list[Timeline]:
    """One race run of pi-live-voice and of the cookbook client, with everything stamped."""
    plan = race_plan(seed)
    ours = Timeline("pi-live-voice", seed)
    await run_ours(plan, workdir, ours)
    cookbook = Timeline("cookbook", seed)
    await run_reference(plan, "cookbook", workdir, cookbook)
    return [ours, cookbook]
