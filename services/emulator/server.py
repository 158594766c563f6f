"""The Gemini Live stand-in: a TLS WebSocket server that plays scenarios and enforces the rules.

One :class:`LiveConnection` per WebSocket. Its reader judges every client frame against
:class:`~services.emulator.rules.ProtocolState` and closes with the real service's code and
reason on a violation; its model task plays the scenario's turns. Conversations outlive
connections through resumption handles, so a client that reconnects with the newest handle
carries on where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State as WsState

from services.emulator import frames, hostile, models, rules
from services.emulator.activity import EnergyVad, VadSettings
from services.emulator.keepalive import slow_pong_connection
from services.emulator.scenario import Fault, FaultMoment, Scenario, ToolCallSpec, Turn
from services.emulator.speech import OUTPUT_RATE, synthesize
from services.emulator.tls import make_server_context
from services.emulator.trace import Trace

log = logging.getLogger(__name__)

LIVE_PATHS = frozenset(
    f"/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent"
    for version in ("v1", "v1beta", "v1alpha")  # v1: google-genai 3.x's default
)
_SPEECH_START_MS = 60.0
# Token rates (assumed: the record gives 32 tokens per second of audio, ~4 characters a token).
AUDIO_TOKENS_PER_S = 32
TEXT_CHARS_PER_TOKEN = 4
Resumption = Literal["replay", "wait"]
RESUMPTION_MODES: tuple[Resumption, ...] = ("replay", "wait")
ReplayIds = Literal["new", "same"]
REPLAY_ID_MODES: tuple[ReplayIds, ...] = ("new", "same")


@dataclass(frozen=True)
class EmulatorSettings:
    """How the stand-in serves. ``pace`` scales reply timing: 1.0 is real time, 0 is flat out."""

    scenario: Scenario
    cert_out: Path
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = field(default="emulator-key", repr=False)
    trace_path: Path | None = None
    pace: float = 1.0
    grace_ms: int | None = None
    chunk_ms: int = 40
    setup_timeout_s: float = 10.0
    # Answer every keepalive ping this late (0: at once), as the service may (8 to 30 s).
    pong_delay_ms: int = 0
    # Resuming with a handle taken after the user's turn was committed: "replay" answers that
    # turn at once, "wait" waits for the user to ask again (the record is silent on which).
    resumption: Resumption = "replay"
    # A replayed turn's toolCall: the ids the first one had, or new ones (the record is silent).
    replay_ids: ReplayIds = "new"
    # Seeds the call ids (over the scenario's seed); None with no scenario seed: random ones.
    seed: int | None = None


@dataclass
class Conversation:
    """A conversation as the service remembers it, across connections."""

    conv_id: str
    rng: random.Random
    turn_index: int = 0
    # The user input of turn_index is committed but the model has not finished answering it.
    replay: bool = False
    handles_valid: bool = True
    fired: set[tuple[int, str]] = field(default_factory=set)
    # The call ids each turn's toolCall had, for a replay that keeps them.
    call_ids: dict[int, list[str]] = field(default_factory=dict)
    connections: int = 0
    # Its connections, to tell whether one is still open when another resumes it.
    sockets: list[ServerConnection] = field(default_factory=list)
    # Tokens of the context so far, per modality: every turn's prompt is all of it again.
    context_tokens: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HandleSnapshot:
    """What a resumption handle restores."""

    conversation: Conversation
    turn_index: int
    replay: bool


class _Closed(Exception):
    """The connection ended; the model task stops."""


class LiveConnection:
    """One client WebSocket: reads and judges frames, and runs the scenario's model."""

    def __init__(self, emulator: Emulator, ws: ServerConnection, number: int) -> None:
        self.em = emulator
        self.ws = ws
        self.number = number
        self.scenario = emulator.settings.scenario
        grace = emulator.settings.grace_ms
        self.state = rules.ProtocolState(
            grace_s=(self.scenario.grace_ms if grace is None else grace) / 1000
        )
        self.conv: Conversation | None = None
        self.model = models.LEGACY
        # Each function the client declared in its setup, with its behaviour as written; the
        # model calls no others.
        self.declared: dict[str, str | None] = {}
        self.resumption = False
        self.changed = asyncio.Event()
        # What the user is doing, as the service sees it.
        self.user_speaking = False
        self.user_speech_ms = 0.0
        self.turns_ended = 0
        self.turns_handled = 0
        self.barge_in = False
        self.cancelled = False
        sc = self.scenario
        self._vad = EnergyVad(
            VadSettings(
                min_rms=sc.speech_rms,
                margin_db=sc.noise_margin_db,
                window_ms=sc.noise_window_ms,
                start_ms=_SPEECH_START_MS,
                hangover_ms=sc.silence_hangover_ms,
            )
        )
        self._audio_ms = 0.0  # audio received on this connection
        # What the client sent since the last turnComplete, and the model's reply so far.
        self._new_input = {"AUDIO": 0.0, "TEXT": 0.0}
        self._reply_ms = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- output --------------------------------------------------------------------------
    def _trace(self, event: str, **fields_: Any) -> None:
        conv = self.conv.conv_id if self.conv else None
        self.em.trace.write(event, conn=self.number, conv=conv, **fields_)

    async def send(self, message: dict[str, Any], **extra: Any) -> None:
        """Send one server message and trace it."""
        if self._closing:
            raise _Closed
        text = frames.encode(message)
        self._trace("out", kind=frames.server_kind(message), size=len(text), **extra)
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            raise _Closed from exc

    async def send_raw(self, frame: str | bytes, kind: str, count: int = 1) -> None:
        """Send a frame as it is, ``count`` times (hostile mode); traced once, kind and size."""
        if self._closing:
            raise _Closed
        self._trace("out", kind=kind, size=len(frame), count=count)
        try:
            for _ in range(count):
                await self.ws.send(frame)
        except ConnectionClosed as exc:
            raise _Closed from exc

    async def close(self, code: int, reason: str, why: str) -> None:
        """Close the connection from the server side, tracing why."""
        if self._closing:
            return
        self._closing = True
        self._trace("close", by="server", code=code, reason=reason, why=why)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close(code, reason)

    # -- the connection's life ------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        if not await self._setup():
            return
        model = asyncio.create_task(self._model_loop(), name=f"emulator-model-{self.number}")
        try:
            await self._read_loop()
        finally:
            self._closing = True
            model.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(model, *self._tasks, return_exceptions=True)

    async def _join(self, handle: str | None) -> Conversation | None:
        """The conversation ``handle`` names, or a new one; None if the handle is refused."""
        if handle:
            snapshot = self.em.handles.get(handle)
            if snapshot is None:
                await self._reject(
                    "unknown-resumption-handle",
                    rules.CODE_INVALID,
                    f"handle {handle[:12]}… was never issued",
                    reason=rules.REASON_INVALID_HANDLE,
                )
                return None
            if not snapshot.conversation.handles_valid:
                self.conv = snapshot.conversation
                await self._reject(
                    "stale-resumption-handle",
                    rules.CODE_POLICY,
                    f"handle {handle[:12]}… has expired",
                    reason=rules.REASON_SESSION_NOT_FOUND,
                )
                return None
            conv = snapshot.conversation
            if any(ws.state is WsState.OPEN for ws in conv.sockets):
                # Reported (python-genai and client issues, 2026): resuming while the old
                # socket is still open ends the new one with 1011. A client must close first.
                await self._reject(
                    "resumed-over-open-socket",
                    rules.CODE_INTERNAL,
                    f"handle {handle[:12]}… resumed while its conversation's socket is open",
                    reason=rules.REASON_INTERNAL,
                )
                return None
            conv.turn_index = snapshot.turn_index
            conv.replay = snapshot.replay and self.em.settings.resumption == "replay"
            return conv
        return self.em.new_conversation()

    async def _setup(self) -> bool:
        try:
            async with asyncio.timeout(self.em.settings.setup_timeout_s):
                raw = await self.ws.recv()
        except (TimeoutError, ConnectionClosed):
            self._trace("close", by="client", code=None, reason="no setup")
            return False
        try:
            frame = frames.parse_client_frame(raw)
        except frames.FrameError as exc:
            await self._reject("bad-frame", rules.CODE_INVALID, str(exc))
            return False
        if frame.kind != "setup":
            await self._reject("first-frame-not-setup", rules.CODE_INVALID, frame.kind)
            return False
        # Like the real service, the key is judged once the setup has arrived.
        key = self.ws.request.headers.get("x-goog-api-key") if self.ws.request else None
        if not key:
            await self._reject(
                "missing-api-key", rules.CODE_POLICY, "no x-goog-api-key", rules.REASON_NO_KEY
            )
            return False
        if key != self.em.settings.api_key:
            detail = "x-goog-api-key mismatch"
            await self._reject("bad-api-key", rules.CODE_INVALID, detail, rules.REASON_BAD_KEY)
            return False
        setup = frame.body
        self.model = models.rules_for(setup.get("model"))
        self.declared = models.declared_behaviors(setup)
        rejected = models.rejected_fields(self.model, setup)
        if rejected:
            await self._withhold_setup_complete(rejected)
            return False
        realtime = setup.get("realtimeInputConfig") or {}
        aad = realtime.get("automaticActivityDetection") or {}
        self.state.manual_activity = bool(aad.get("disabled", False))
        resumption = setup.get("sessionResumption")
        self.resumption = resumption is not None
        handle = (resumption or {}).get("handle")
        conv = await self._join(handle)
        if conv is None:
            return False
        self.conv = conv
        self.conv.connections += 1
        conv.sockets = [ws for ws in conv.sockets if ws.state is WsState.OPEN] + [self.ws]
        self._trace(
            "in",
            kind="setup",
            size=frame.size,
            model=setup.get("model"),
            family=self.model.family,
            fields=models.present_fields(setup),
            behaviors=self.declared,
            manual_activity=self.state.manual_activity,
            resumed=bool(handle),
            turn=self.conv.turn_index,
        )
        hostile_setup = self.scenario.setup_frame
        if hostile_setup is not None and not self.em.setup_frame_sent:
            self.em.setup_frame_sent = True
            with contextlib.suppress(_Closed):
                await self._hostile(hostile_setup)
            # The client is expected to close; its closure is traced by the caller.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.em.settings.setup_timeout_s):
                    await self.ws.wait_closed()
            self._trace("close", by="client", code=self.ws.close_code, reason="")
            return False
        await self.send(frames.setup_complete())
        if self.resumption and not self.conv.replay:
            await self._issue_handle()
        return True

    async def _withhold_setup_complete(self, rejected: list[str]) -> None:
        """A setup field this model rejects: like 3.1 Flash Live, answer nothing at all (no
        setupComplete, no close) until the client gives up."""
        self._trace(
            "violation",
            rule="setup-field-rejected",
            code=None,
            reason="",
            detail=f"{self.model.family} rejects {', '.join(rejected)}: no setupComplete",
            fatal=False,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.em.settings.setup_timeout_s):
                await self.ws.wait_closed()
        self._trace("close", by="client", code=None, reason="no setupComplete")
        await self.close(1000, "", "setup never completed")

    async def _reject(
        self, rule: str, code: int, detail: str, reason: str = rules.REASON_INVALID_ARGUMENT
    ) -> None:
        self._trace("violation", rule=rule, code=code, reason=reason, detail=detail, fatal=True)
        await self.close(code, reason, rule)

    async def _read_loop(self) -> None:
        try:
            async for raw in self.ws:
                if not await self._on_frame(raw):
                    return
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            self._trace(
                "close",
                by="client",
                code=rcvd.code if rcvd else 1006,
                reason=rcvd.reason if rcvd else "",
            )
            return
        if not self._closing:
            self._trace("close", by="client", code=1000, reason="")

    # -- judging client frames ------------------------------------------------------------
    async def _on_frame(self, raw: str | bytes) -> bool:
        now = time.monotonic()
        try:
            frame = frames.parse_client_frame(raw)
        except frames.FrameError as exc:
            await self._reject("bad-frame", rules.CODE_INVALID, str(exc))
            return False
        if frame.kind == "mediaChunks":
            await self._reject(
                "legacy-media-chunks", rules.CODE_INVALID, frame.kind, rules.REASON_MEDIA_CHUNKS
            )
            return False
        if frame.is_realtime:
            in_flight = bool(self.state.blocking) and self.state.in_grace(now)
            violation = self.state.check_realtime(frame.kind, now)
            self._trace(
                "in",
                kind=frame.kind,
                size=frame.size,
                audio_bytes=len(frame.audio),
                pending=len(self.state.pending),
                blocking=len(self.state.blocking),
                in_flight=in_flight,
            )
            if violation is not None:
                if not await self._on_violation(violation):
                    return False
            else:
                self._track_user(frame)
            return True
        if frame.kind == "toolResponse":
            return await self._on_tool_response(frame)
        if frame.kind == "clientContent":
            self._trace("in", kind="clientContent", size=frame.size)
            if frame.body.get("turnComplete"):
                self.turns_ended += 1
                self.changed.set()
            return True
        await self._reject("setup-twice", rules.CODE_INVALID, "setup sent on an open session")
        return False

    async def _on_violation(self, violation: rules.Violation) -> bool:
        self._trace(
            "violation",
            rule=violation.rule,
            code=violation.code,
            reason=violation.reason,
            detail=violation.detail,
            fatal=violation.fatal,
        )
        if violation.fatal:
            await self.close(violation.code, violation.reason, violation.rule)
            return False
        return True

    async def _on_tool_response(self, frame: frames.ClientFrame) -> bool:
        responses = frame.body.get("functionResponses") or []
        if isinstance(responses, dict):
            responses = [responses]
        self._trace(
            "in",
            kind="toolResponse",
            size=frame.size,
            ids=[r.get("id") for r in responses],
            names=[r.get("name") for r in responses],
            # The service honours scheduling on non-blocking calls only (SDK docs).
            scheduling=[r.get("scheduling") for r in responses],
            will_continue=[r.get("willContinue") for r in responses],
        )
        violation = self.state.check_tool_response(responses)
        if violation is not None:
            return await self._on_violation(violation)
        self._new_input["TEXT"] += frame.size / TEXT_CHARS_PER_TOKEN
        self.changed.set()
        return True

    def _track_user(self, frame: frames.ClientFrame) -> None:
        kind = frame.kind
        if kind == "activityStart":
            self._speech_started()
        elif kind == "activityEnd":
            self._speech_ended()
        elif kind == "audioStreamEnd":
            self._vad.speech_ended()
            if self.user_speaking:
                self._speech_ended()
        elif kind == "audio":
            self._on_audio(frame)

    def _speech_started(self) -> None:
        self.user_speaking = True
        self.user_speech_ms = 0.0
        self.barge_in = True
        self.changed.set()

    def _speech_ended(self) -> None:
        self.user_speaking = False
        self.turns_ended += 1
        self.changed.set()

    def _on_audio(self, frame: frames.ClientFrame) -> None:
        mime = str((frame.body.get("audio") or {}).get("mimeType", ""))
        rate = 16000
        if "rate=" in mime:
            with contextlib.suppress(ValueError):
                rate = int(mime.split("rate=", 1)[1].split(";", 1)[0])
        samples = np.frombuffer(frame.audio[: len(frame.audio) // 2 * 2], dtype="<i2")
        duration_ms = 1000 * len(samples) / rate
        # Silence is billed too.
        self._new_input["AUDIO"] += duration_ms * AUDIO_TOKENS_PER_S / 1000
        if self.state.manual_activity:
            if self.user_speaking:
                self.user_speech_ms += duration_ms
                self.changed.set()
            return
        rms = math.sqrt(float(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0
        self._audio_ms += duration_ms
        change = self._vad.feed(rms, duration_ms, self.user_speaking)
        if change is not None:
            self._trace(
                "activity",
                detected=change,
                audio_ms=round(self._audio_ms),
                floor_rms=round(self._vad.floor_rms),
            )
            if change == "start":
                self._speech_started()
            else:
                self._speech_ended()
        if self.user_speaking:
            self.user_speech_ms += duration_ms
            self.changed.set()

    # -- the model ------------------------------------------------------------------------
    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()

    async def _sleep(self, ms: float) -> None:
        await asyncio.sleep(ms / 1000)

    async def _issue_handle(self) -> None:
        assert self.conv is not None
        if not self.resumption:
            return
        handle = self.em.new_handle(self.conv)
        await self.send(frames.resumption_update(handle, True), handle_turn=self.conv.turn_index)

    async def _model_loop(self) -> None:
        assert self.conv is not None
        try:
            if self.conv.replay:
                # Resumed after the user's turn was committed: answer it now.
                turn = self.scenario.turn(self.conv.turn_index)
                await self._respond(turn, committed=True, replay=True)
            while True:
                await self._wait_for(lambda: self.user_speaking or self._user_turn_over())
                turn = self.scenario.turn(self.conv.turn_index)
                await self._wait_for(lambda: self._ready_to_answer(turn))  # noqa: B023
                await self._respond(turn, committed=False)
        except _Closed:
            return

    def _user_turn_over(self) -> bool:
        return self.turns_ended > self.turns_handled

    def _ready_to_answer(self, turn: Turn) -> bool:
        """A turn is answered when the user stops, or early once enough speech arrived."""
        if self._user_turn_over():
            return True
        early = turn.during_speech_ms if self._calls(turn) else None
        return early is not None and self.user_speaking and self.user_speech_ms >= early

    async def _commit_user_turn(self) -> None:
        """The user's input for this turn is in; a handle taken now replays the answer."""
        assert self.conv is not None
        self.turns_handled = self.turns_ended
        self.conv.replay = True
        await self._issue_handle()

    async def _respond(self, turn: Turn, committed: bool, replay: bool = False) -> None:
        assert self.conv is not None
        index = self.conv.turn_index
        if not committed and self._user_turn_over():
            await self._commit_user_turn()
            committed = True
        if turn.heard:
            await self.send(frames.input_transcription(turn.heard))
        if self.resumption:
            await self.send(frames.resumption_update(None, False))
        faults = self._faults_for(turn, index)
        await self._fire("turn_start", faults)
        self.barge_in = False
        calls = self._calls(turn)
        if len(calls) < len(turn.tool_calls):
            undeclared = [c.name for c in turn.tool_calls if c not in calls]
            self._trace("undeclared", names=undeclared, turn=index)
        if calls and not await self._call_tools(turn, calls, faults, replay):
            await self._finish_turn(interrupted=True)
            return
        if not committed:
            await self._wait_for(self._user_turn_over)
            await self._commit_user_turn()
            if self.resumption:
                await self.send(frames.resumption_update(None, False))
        self.barge_in = False
        await self._fire("reply", faults)
        interrupted = await self._speak(turn.reply)
        await self._finish_turn(interrupted=interrupted)

    async def _finish_turn(self, interrupted: bool) -> None:
        assert self.conv is not None
        if interrupted:
            await self.send(frames.interrupted())
        else:
            await self.send(frames.generation_complete())
        usage = self._turn_usage()
        await self.send(
            frames.turn_complete(usage), tokens=usage["totalTokenCount"], turn=self.conv.turn_index
        )
        self.conv.turn_index += 1
        self.conv.replay = False
        if self._user_turn_over() and not self.user_speaking:
            self.turns_handled = self.turns_ended
        await self._issue_handle()

    def _calls(self, turn: Turn) -> tuple[ToolCallSpec, ...]:
        """The turn's function calls the client declared (the model knows of no others)."""
        return tuple(c for c in turn.tool_calls if c.name in self.declared)

    def _turn_usage(self) -> dict[str, Any]:
        """What this turn cost: the whole context again plus the new input, and the reply."""
        assert self.conv is not None
        prompt = dict(self.conv.context_tokens)
        for modality, tokens in self._new_input.items():
            prompt[modality] = prompt.get(modality, 0) + round(tokens)
        response = {"AUDIO": round(self._reply_ms * AUDIO_TOKENS_PER_S / 1000)}
        self.conv.context_tokens = {
            m: prompt.get(m, 0) + response.get(m, 0) for m in prompt.keys() | response.keys()
        }
        self._new_input = dict.fromkeys(self._new_input, 0.0)
        self._reply_ms = 0.0
        return frames.usage_metadata(prompt, response)

    async def _call_tools(
        self,
        turn: Turn,
        specs: tuple[ToolCallSpec, ...],
        faults: list[tuple[str, Fault]],
        replay: bool,
    ) -> bool:
        """Send one toolCall for ``specs`` and wait for every response; False if cancelled."""
        assert self.conv is not None
        await self._sleep(turn.tool_delay_ms)
        index = self.conv.turn_index
        kept = self.conv.call_ids.get(index)
        if replay and self.em.settings.replay_ids == "same" and kept and len(kept) == len(specs):
            ids = kept
        else:
            ids = [f"function-call-{self.conv.rng.getrandbits(63)}" for _ in specs]
            self.conv.call_ids[index] = ids
        names = [spec.name for spec in specs]
        calls = [
            {"id": call_id, "name": spec.name, "args": spec.args}
            for call_id, spec in zip(ids, specs, strict=True)
        ]
        blocks = [models.call_blocks(self.model, self.declared.get(name)) for name in names]
        background = frozenset(i for i, b in zip(ids, blocks, strict=True) if not b)
        self.state.tool_call_sent(list(zip(ids, names, strict=True)), time.monotonic(), background)
        self.cancelled = False
        await self.send(frames.tool_call(calls), ids=ids, names=names, blocking=blocks)
        self._spawn(self._fire("tool_pending", faults, while_pending=True))
        if turn.cancel_after_ms is not None:
            self._spawn(self._cancel_later(ids, turn.cancel_after_ms))
        await self._wait_for(lambda: not self.state.pending)
        return not self.cancelled

    async def _cancel_later(self, ids: list[str], after_ms: int) -> None:
        await self._sleep(after_ms)
        still = [i for i in ids if i in self.state.pending]
        if still:
            self.cancelled = True
            self.state.cancel(still)
            await self.send(frames.tool_call_cancellation(still), ids=still)
            self.changed.set()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Any) -> None:
        with contextlib.suppress(_Closed):
            await coro

    async def _speak(self, text: str) -> bool:
        """Stream ``text`` as audio with transcription at the set pace; True if barged in."""
        # Synthesis may run espeak-ng: keep it off the loop that judges frame timing.
        pcm = await asyncio.to_thread(synthesize, text)
        chunk = int(OUTPUT_RATE * self.em.settings.chunk_ms / 1000) * 2
        pieces = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [b""]
        words = text.split()
        said = 0
        for n, piece in enumerate(pieces):
            if self.barge_in:
                return True
            if piece:
                await self.send(frames.audio_chunk(piece), audio_bytes=len(piece))
                self._reply_ms += 1000 * len(piece) / (2 * OUTPUT_RATE)
            due = math.ceil(len(words) * (n + 1) / len(pieces))
            if due > said:
                await self.send(frames.output_transcription(" ".join(words[said:due]) + " "))
                said = due
            await self._sleep(self.em.settings.chunk_ms * self.em.settings.pace)
        return self.barge_in

    # -- faults ---------------------------------------------------------------------------
    def _faults_for(self, turn: Turn, index: int) -> list[tuple[str, Fault]]:
        assert self.conv is not None
        out = [(f"{index}:{i}", fault) for i, fault in enumerate(turn.faults)]
        rf = self.scenario.random_faults
        if rf is not None:
            draw = random.Random(f"{rf.seed}:{self.conv.conv_id}:{index}").random()
            at: FaultMoment = "tool_pending" if self._calls(turn) else "reply"
            if draw < rf.close_1011:
                out.append((f"{index}:random", Fault(kind="close", at=at, after_ms=20)))
            elif draw < rf.close_1011 + rf.go_away:
                out.append((f"{index}:random", Fault(kind="go_away", at=at, time_left_ms=300)))
            elif draw < rf.close_1011 + rf.go_away + rf.stall:
                out.append((f"{index}:random", Fault(kind="stall", at=at, stall_s=30.0)))
        return out

    async def _fire(
        self, moment: str, faults: list[tuple[str, Fault]], while_pending: bool = False
    ) -> None:
        assert self.conv is not None
        for key, fault in faults:
            if fault.at != moment or (self.conv.turn_index, key) in self.conv.fired:
                continue
            await self._sleep(fault.after_ms)
            if while_pending and not self.state.pending:
                self._trace("fault", kind=fault.kind, at=moment, skipped="no call pending")
                continue
            self.conv.fired.add((self.conv.turn_index, key))
            self._trace("fault", kind=fault.kind, at=moment, key=key)
            if fault.kind == "close":
                reason = fault.reason or (
                    rules.REASON_INTERNAL if fault.code == rules.CODE_INTERNAL else ""
                )
                await self.close(fault.code, reason, "scenario fault")
                raise _Closed
            if fault.kind == "go_away":
                await self.send(frames.go_away(fault.time_left_ms / 1000, fault.time_left))
                self._spawn(self._deadline(fault.time_left_ms))
            elif fault.kind == "stall":
                await self._sleep(fault.stall_s * 1000)
            elif fault.kind == "hostile":
                await self._hostile(fault)
            else:
                self.conv.handles_valid = False

    async def _hostile(self, fault: Fault) -> None:
        if fault.text is not None:
            await self.send_raw(fault.text, "hostile:text", fault.count or 1)
        elif fault.frame == "flood":
            count = fault.count or hostile.FLOOD_COUNT
            await self.send_raw(hostile.FLOOD_FRAME, "hostile:flood", count)
        else:
            assert fault.frame is not None
            frame = hostile.HOSTILE_FRAMES[fault.frame]
            await self.send_raw(frame, f"hostile:{fault.frame}", fault.count or 1)

    async def _deadline(self, time_left_ms: int) -> None:
        await self._sleep(time_left_ms)
        await self.close(rules.CODE_INTERNAL, rules.REASON_DEADLINE, "goAway deadline")


class Emulator:
    """The stand-in server. Use as ``async with Emulator(settings) as em:``."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.trace = Trace(settings.trace_path)
        self.handles: dict[str, HandleSnapshot] = {}
        self.conversations: dict[str, Conversation] = {}
        self._server: Server | None = None
        self._numbers = itertools.count(1)
        self.setup_frame_sent = False
        self._conv_numbers = itertools.count(1)
        seed = settings.seed if settings.seed is not None else settings.scenario.seed
        self._seed = secrets.randbits(64) if seed is None else seed
        self.port = settings.port

    @property
    def base_url(self) -> str:
        """The URL to hand the SDK as ``HttpOptions.base_url``."""
        return f"https://{self.settings.host}:{self.port}"

    def new_conversation(self) -> Conversation:
        """Start a conversation with its own seeded randomness."""
        number = next(self._conv_numbers)
        conv_id = f"conv-{number}"
        conv = Conversation(conv_id, random.Random(f"{self._seed}:{number}"))
        self.conversations[conv_id] = conv
        return conv

    def new_handle(self, conv: Conversation) -> str:
        """A resumption handle restoring ``conv`` as it is now."""
        handle = secrets.token_urlsafe(24)
        self.handles[handle] = HandleSnapshot(conv, conv.turn_index, conv.replay)
        return handle

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path not in LIVE_PATHS:
            self.trace.write("reject", path=path, status=404)
            return connection.respond(HTTPStatus.NOT_FOUND, f"no Live endpoint at {path}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        number = next(self._numbers)
        self.trace.write("connect", conn=number, path=ws.request.path if ws.request else None)
        await LiveConnection(self, ws, number).run()

    async def start(self) -> None:
        """Generate the certificate and start listening."""
        ssl_context = make_server_context(self.settings.cert_out)
        self._server = await serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            ssl=ssl_context,
            process_request=self._process_request,
            max_size=16 * 1024 * 1024,
            close_timeout=2,
            create_connection=(
                slow_pong_connection(self.settings.pong_delay_ms / 1000)
                if self.settings.pong_delay_ms > 0
                else None
            ),
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info(
            "Live stand-in listening on %s (certificate %s)", self.base_url, self.settings.cert_out
        )

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.trace.close()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
