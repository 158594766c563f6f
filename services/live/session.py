"""The Live session: the loop that owns the WebSocket to Gemini Live and carries out the
protocol's effects.

The rules and the state live in :class:`~services.live.protocol.LiveProtocol`, which does no
I/O; this module does the I/O around it. Every realtime input goes through one send path that
asks the protocol first. The receive loop reads raw frames, passes each through the one
boundary (:mod:`services.live.inbound`: a malformed frame closes the connection as a protocol
error, then the session resumes) and hands each checked message to the protocol without
awaiting, so a ``toolCall`` shuts the gate before any other task can run; then it carries out
the effects in order. Closures are explained (:mod:`services.live.diagnostics`) and answered
by the reconnect policy: resume with the newest handle, start fresh when the handle is stale,
or stop with a clear error when retrying cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

from google import genai
from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import Close

from services.live.diagnostics import Action, CloseReport
from services.live.dispatch import ToolDispatcher
from services.live.gate import InputGate, Signal
from services.live.inbound import (
    Content,
    FrameBudget,
    ProtocolError,
    ServerMessage,
    excerpt,
    parse_server_frame,
)
from services.live.protocol import (
    AnswerAgain,
    BackgroundChanged,
    CloseConnection,
    Deliver,
    Effect,
    GateChanged,
    LiveProtocol,
    SendSignal,
    SessionStats,
    StartTools,
    StopTools,
    UsageReport,
)
from services.live.reconnect import ReconnectPolicy
from services.live.settings import LiveSettings, build_client, build_config, tool_behaviors
from services.live.transport import (
    SEAM_ADVICE,
    SeamBroken,
    check_seam,
    connection_of,
    unread_frames,
)
from services.tools.registry import DEFAULT_TIMEOUT_S, Behavior, ToolRegistry

log = logging.getLogger(__name__)

# Closures this side chose after the service's goAway: expected, so logged at INFO.
GO_AWAY_CAUSES = frozenset({"go-away", "go-away-deadline"})
# How this side closes on a frame it cannot use: 1007 when the bytes do not even decode,
# 1009 when too large, 1008 for a flood, 1002 (protocol error) for a frame of the wrong shape.
_CLOSE_CODES = {"not-utf8": 1007, "not-json": 1007, "too-large": 1009, "flood": 1008}


class ConnectionState(StrEnum):
    """Where the session is with the service."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ConnectionStatus:
    """A change of connection state, with the closure that caused it, if any."""

    state: ConnectionState
    detail: str = ""
    delay_s: float | None = None
    report: CloseReport | None = None


class SessionEvents:
    """Callbacks from the session. They run in the event loop and must not block; override
    the ones you need."""

    def on_connection(self, status: ConnectionStatus) -> None:
        """The connection state changed."""

    def on_gate(self, shut: bool, calls: tuple[tuple[str, str], ...]) -> None:
        """The input gate shut for ``calls`` (id, name), or opened (``calls`` empty)."""

    def on_background(self, calls: tuple[tuple[str, str], ...]) -> None:
        """The non-blocking calls running now (id, name) changed; empty when none is left.
        They never shut the gate: the user may keep talking."""

    def on_audio(self, pcm: bytes) -> None:
        """A piece of the model's reply: 24 kHz mono s16le."""

    def on_interrupted(self) -> None:
        """The user's speech cut the model off: flush playback now."""

    def on_turn_complete(self) -> None:
        """The model's turn is over."""

    def on_transcript(self, source: str, text: str) -> None:
        """Transcribed speech; ``source`` is ``user`` or ``model``."""

    def on_tool_result(self, call_id: str, name: str, payload: dict[str, Any], ms: float) -> None:
        """A tool call was answered on the wire after ``ms`` milliseconds."""

    def on_usage(self, usage: dict[str, Any]) -> None:
        """The service's ``usageMetadata`` for a turn (camelCase keys, unchecked values)."""


class LiveSessionFatal(Exception):
    """Retrying cannot help (bad key, invalid setup): carries the closure's report."""

    def __init__(self, report: CloseReport) -> None:
        super().__init__(report.summary())
        self.report = report


class _LocalClose(Exception):
    """A closure decided on this side (stall, goAway, time-out) or a failed connect."""

    def __init__(self, cause: str, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason
        self.code = code


class LiveSession:
    """A Live conversation that survives the service: gate, tools, resumption, diagnostics."""

    def __init__(
        self,
        settings: LiveSettings,
        tools: ToolRegistry,
        api_key: str,
        events: SessionEvents | None = None,
        *,
        rng: random.Random | None = None,
        client: genai.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tools = tools
        # Checked here so that a behaviour the model cannot take fails before any connect.
        self.behaviors = tool_behaviors(settings.profile, tools)
        self.events = events or SessionEvents()
        self.protocol = LiveProtocol(
            manual_activity=settings.manual_activity,
            resumption=settings.resumption,
            stall_timeout_s=settings.stall_timeout_s,
            go_away_margin_s=settings.go_away_margin_s,
            blocking=self._blocking,
            time_limit_s=self._time_limit_s,
            idempotent=self._idempotent,
        )
        self.stats: SessionStats = self.protocol.stats
        self.policy = ReconnectPolicy(settings.backoff, rng or random.Random())
        self.closures: deque[CloseReport] = deque(maxlen=32)
        self.session_id = uuid.uuid4().hex[:12]
        self._client = client or build_client(settings, api_key)
        self._clock = clock
        self._session: AsyncSession | None = None
        self._local_cause: str | None = None
        self._connected = asyncio.Event()
        self._mime = f"audio/pcm;rate={settings.input_rate}"
        self._dispatcher = ToolDispatcher(
            tools,
            awaited=self.protocol.awaited,
            send=self._send_tool_response,
            finished=self._tool_finished,
            on_result=self.events.on_tool_result,
            cap_chars=settings.response_cap_chars,
            max_bytes=settings.max_response_bytes,
        )

    @property
    def gate(self) -> InputGate:
        """The protocol's input gate, for reading: only the protocol changes it."""
        return self.protocol.gate

    # -- the send path ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is set up and serving."""
        return self._session is not None

    async def wait_connected(self) -> None:
        """Wait until a connection is set up."""
        await self._connected.wait()

    def pending_tools(self) -> tuple[str, ...]:
        """The names of the blocking calls now pending (none: realtime input may flow)."""
        return tuple(self.gate.pending.values())

    def gated_frames(self) -> int:
        """How many realtime frames and signals the gate has held back so far."""
        return sum(self.gate.dropped.values())

    async def _inbound_first(self) -> AsyncSession | None:
        """Let the receive loop read any server frame that already arrived before sending.

        A ``toolCall`` sitting unread in our own buffer would otherwise let one more frame
        out after the service considers the call pending. Bounded: a few loop turns."""
        for _ in range(4):
            session = self._session
            if session is None or not unread_frames(session):
                return session
            await asyncio.sleep(0)
        return self._session

    async def send_audio(self, pcm: bytes) -> bool:
        """Send 16-bit mono PCM at the configured input rate; False if it was not sent."""
        session = await self._inbound_first()
        if session is None:
            self.stats.frames_offline += 1
            return False
        if not self.protocol.offer("audio", len(pcm), self._clock()):
            return False
        blob = types.Blob(data=pcm, mime_type=self._mime)
        return await self._guarded(session.send_realtime_input(audio=blob))

    async def set_activity(self, active: bool) -> None:
        """The user started or stopped speaking (manual turn taking)."""
        await self._inbound_first()
        signal = self.protocol.activity(active)
        if signal is not None:
            await self._send_signal(signal)

    async def end_audio_stream(self) -> bool:
        """Tell the service the mic paused (automatic activity detection only)."""
        session = await self._inbound_first()
        if self.settings.manual_activity:
            log.warning("audioStreamEnd is for automatic activity detection; not sent")
            return False
        if session is None or not self.protocol.offer("audioStreamEnd", 0, self._clock()):
            return False
        return await self._guarded(session.send_realtime_input(audio_stream_end=True))

    async def _send_signal(self, signal: Signal) -> None:
        session = self._session
        if session is None:
            return
        self.protocol.sent(signal.value, 0, self._clock())
        if signal is Signal.START:
            await self._guarded(session.send_realtime_input(activity_start=types.ActivityStart()))
        else:
            await self._guarded(session.send_realtime_input(activity_end=types.ActivityEnd()))

    async def _send_tool_response(self, response: types.FunctionResponse, size: int) -> bool:
        session = self._session
        if session is None:
            return False
        # A blocking call's answer (no scheduling) is owed a reply: it arms the stall watchdog.
        awaits_reply = response.scheduling is None
        self.protocol.sent("toolResponse", size, self._clock(), awaits_reply=awaits_reply)
        return await self._guarded(session.send_tool_response(function_responses=[response]))

    async def _guarded(self, send: Any) -> bool:
        try:
            await send
        except (ConnectionClosed, errors.APIError) as exc:
            # The receive loop sees the same closure and reports it once.
            log.debug("send failed on a closing connection: %s", exc)
            return False
        return True

    def _blocking(self, name: str) -> bool:
        """Does a call of ``name`` shut the gate? A name we never declared does: the safe side."""
        behavior = self.behaviors.get(name, (Behavior.BLOCKING, None))[0]
        return behavior is Behavior.BLOCKING

    def _time_limit_s(self, name: str) -> float:
        """How long a call of ``name`` may take: its tool's time-out (the default for a name
        we never declared, which the registry answers at once with an error)."""
        spec = self.tools.spec(name)
        return spec.timeout_s if spec is not None else DEFAULT_TIMEOUT_S

    def _idempotent(self, name: str) -> bool:
        spec = self.tools.spec(name)
        return spec is not None and spec.idempotent

    async def _tool_finished(
        self, call_id: str, answered: bool, payload: dict[str, Any] | None
    ) -> None:
        await self._apply(self.protocol.tool_finished(call_id, answered, payload, self._clock()))

    async def _apply(self, effects: list[Effect]) -> None:
        """Carry out the protocol's effects in order. Only a signal is awaited, and the
        protocol puts it last among the effects of one event."""
        for effect in effects:
            match effect:
                case SendSignal(signal=signal):
                    await self._send_signal(signal)
                case StartTools(calls=calls):
                    self._dispatcher.start(calls)
                case AnswerAgain(call_id=call_id, payload=payload):
                    call = self.protocol.awaited(call_id)
                    if call is not None:
                        self._dispatcher.answer_again(call_id, call.name, payload)
                case StopTools(ids=ids):
                    self._dispatcher.stop(ids)
                case GateChanged(shut=shut, calls=gate_calls):
                    self.events.on_gate(shut, gate_calls)
                case BackgroundChanged(calls=running):
                    self.events.on_background(running)
                case Deliver(content=content):
                    self._deliver(content)
                case UsageReport(usage=usage):
                    self.events.on_usage(usage)
                case CloseConnection(cause=cause, reason=reason, code=code):
                    raise _LocalClose(cause, reason, code)

    def _deliver(self, content: Content) -> None:
        for pcm in content.audio:
            self.events.on_audio(pcm)
        if content.interrupted:
            self.events.on_interrupted()
        if content.input_text:
            self.events.on_transcript("user", content.input_text)
        if content.output_text:
            self.events.on_transcript("model", content.output_text)
        if content.turn_complete:
            self.events.on_turn_complete()

    # -- the receive side ------------------------------------------------------------------
    def describe_state(self) -> str:
        """What the session is doing, in words, for logs and closure reports."""
        return self.protocol.describe_state()

    def _on_message(self, message: ServerMessage) -> list[Effect]:
        """Hand one checked server message to the protocol, without awaiting: its effects."""
        return self.protocol.receive(message, self._clock())

    async def _receive(self, session: AsyncSession) -> None:
        # Raw frames, not the SDK's receive(): every frame passes the one boundary
        # (services.live.inbound) before anything acts on it, and the SDK's parser, which
        # raises on a malformed frame, never sees one.
        ws = connection_of(session)
        budget = FrameBudget(self.settings.max_frames_per_second)
        while True:
            raw = await ws.recv(decode=False)
            if not budget.admit(self._clock()):
                self._protocol_error(
                    ProtocolError(
                        "flood", f"over {budget.per_second} frames in one second", len(raw), ""
                    )
                )
            try:
                message = parse_server_frame(raw, self.settings.max_frame_bytes)
            except ProtocolError as exc:
                self._protocol_error(exc)
            await self._apply(self._on_message(message))

    def _protocol_error(self, exc: ProtocolError) -> NoReturn:
        """Count a frame that failed the boundary and close the connection for it; the
        closure's report (logged once) carries the kind, size and first bytes."""
        self.stats.protocol_errors[exc.kind] += 1
        raise _LocalClose("protocol-error", str(exc), _CLOSE_CODES.get(exc.kind, 1002)) from exc

    async def _watchdog(self) -> None:
        """Close the connection when the protocol says so: a silent stall, a call that cannot
        be answered or is overdue, a goAway deadline."""
        while True:
            await asyncio.sleep(0.1)
            await self._apply(self.protocol.tick(self._clock()))

    # -- a connection's life ---------------------------------------------------------------
    async def _serve(self) -> None:
        config = build_config(self.settings, self.tools, self.protocol.handle)
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    session = await stack.enter_async_context(
                        self._client.aio.live.connect(model=self.settings.model, config=config)
                    )
            except TimeoutError as exc:
                raise _LocalClose(
                    "connect-timeout",
                    f"no setupComplete within {self.settings.connect_timeout_s:g} s",
                ) from exc
            except ssl.SSLError:
                raise  # a ValueError too, but no frame: _one_connection names it as TLS
            except (ValueError, AttributeError, RecursionError) as exc:
                # The SDK parses the first frame itself: JSON and pydantic raise ValueErrors,
                # a JSON value that is not an object AttributeError, one nested past the
                # parser's depth RecursionError. It has not given us the session, so its
                # context closes the socket.
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._protocol_error(ProtocolError("bad-setup", "first frame", 0, excerpt(first)))
            if session.setup_complete is None:
                self._protocol_error(
                    ProtocolError("bad-setup", "the first frame is not setupComplete", 0, "")
                )
            self._session = session
            opened = self.protocol.opened(self._clock())
            self._connected.set()
            log.info(
                "connected to %s (%s)",
                self.settings.model,
                "resumed" if self.protocol.handle else "new conversation",
                extra={"SESSION_ID": self.session_id},
            )
            self.events.on_connection(ConnectionStatus(ConnectionState.CONNECTED))
            await self._apply(opened)
            watchdog = asyncio.create_task(self._watchdog(), name="live-watchdog")
            receive = asyncio.create_task(self._receive(session), name="live-receive")
            try:
                done, _ = await asyncio.wait(
                    {watchdog, receive}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()
            except (_LocalClose, asyncio.CancelledError) as exc:
                # Leaving the SDK's context with an exception would close with 1011; a
                # closure we chose is a normal one (1000), or says the frame was at fault.
                code = exc.code if isinstance(exc, _LocalClose) else None
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        if code is None:
                            await session.close()
                        else:
                            await _close_draining(connection_of(session), code)
                raise
            finally:
                for task in (watchdog, receive):
                    task.cancel()
                await asyncio.gather(watchdog, receive, return_exceptions=True)

    async def _one_connection(self) -> CloseReport:
        """Connect and serve until the connection ends; return the explained closure."""
        code: int | None = None
        reason = ""
        cause: str | None = None
        started = self._clock()
        try:
            await self._serve()
        except _LocalClose as exc:
            cause, reason, code = exc.cause, exc.reason, exc.code
        except errors.APIError as exc:
            code, reason = exc.code, str(exc.details or exc.message or "")
            if (ours := _closed_by_us(exc)) is not None:
                cause, code, reason = "client-close", ours.code, ours.reason
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            reason = exc.rcvd.reason if exc.rcvd else ""
            if (ours := _closed_by_us(exc)) is not None:
                cause, code, reason = "client-close", ours.code, ours.reason
        except InvalidStatus as exc:
            cause, reason = "refused", f"HTTP {exc.response.status_code}"
        except SeamBroken as exc:
            cause, reason = "seam", str(exc)
        except ssl.SSLCertVerificationError as exc:
            cause, reason = (
                "tls",
                (f"{self._endpoint()}: certificate verify failed: {exc.verify_message or exc}"),
            )
        except ssl.SSLError as exc:
            cause, reason = "tls", f"{self._endpoint()}: TLS handshake failed: {exc.reason or exc}"
        except (OSError, InvalidHandshake) as exc:
            cause, reason = "unreachable", str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            self._local_cause = "shutdown"
            raise
        finally:
            report = self._report(code, reason, cause)
            await self._disconnected()
        self.policy.connected_for(self._clock() - started)
        return report

    def _endpoint(self) -> str:
        """The service's address as configured, for messages about reaching it."""
        return self.settings.base_url or "the Gemini API's default endpoint"

    def _report(self, code: int | None, reason: str, cause: str | None) -> CloseReport:
        return self.protocol.close_report(code, reason, cause or self._local_cause, self._clock())

    async def _disconnected(self) -> None:
        self._session = None
        self._connected.clear()
        # Tools still running are left to finish (see services.live.dispatch): stopping one
        # half-way could leave its side effect half done, and a replay would run it again.
        await self._apply(self.protocol.closed())

    def _log_closure(self, report: CloseReport) -> None:
        level = {
            Action.STOP: logging.INFO,
            Action.RESUME: logging.WARNING,
            Action.FRESH: logging.WARNING,
            Action.FATAL: logging.ERROR,
        }[report.action]
        if report.context.local_cause in GO_AWAY_CAUSES:
            level = logging.INFO
        elif report.context.input_sent_while_pending:
            level = logging.ERROR
        log.log(
            level,
            "Live connection %s",
            report.summary(),
            extra={
                "CLOSE_CODE": report.code,
                "CLOSE_REASON": report.reason,
                "LIVE_STATE": report.context.state,
                "PENDING_CALLS": ",".join(
                    f"{name}:{cid}" for cid, name, _ in report.context.pending
                ),
                "LIKELY_CAUSE": report.cause,
                "SESSION_ID": self.session_id,
                "RECONNECT_ATTEMPT": self.policy.attempt,
            },
        )

    async def run(self) -> None:
        """Connect and keep the conversation alive until cancelled.

        Raises :class:`LiveSessionFatal` when the closure is one retrying cannot fix, after
        the policy's bounded attempts."""
        if (problem := await check_seam()) is not None:
            log.error(
                "transport seam broken: %s; %s",
                problem,
                SEAM_ADVICE,
                extra={"TRANSPORT_SEAM": "broken"},
            )
        self.events.on_connection(ConnectionStatus(ConnectionState.CONNECTING))
        try:
            while True:
                report = await self._one_connection()
                # A closed connection's TLS and WebSocket objects are reference cycles that
                # hold 256 KiB buffers; left to the oldest generation's collection, they pile
                # up and fragment the heap (RSS grew in 0.25 MiB steps over a soak). Between
                # connections nothing is streaming: collect them now.
                gc.collect()
                self.closures.append(report)
                self.stats.closures[report.code] += 1
                self._log_closure(report)
                if report.action is Action.FRESH:
                    self.protocol.forget_handle()
                    self.session_id = uuid.uuid4().hex[:12]
                    log.warning("starting a fresh session: the conversation context is lost")
                # Every reconnect, a goAway's rotation too, waits for the policy: a service
                # that sends goAway on every connection must not be met with a connect storm.
                delay = self.policy.next_delay(report.action)
                if delay is None:
                    self.events.on_connection(
                        ConnectionStatus(ConnectionState.ERROR, report.cause, report=report)
                    )
                    raise LiveSessionFatal(report)
                self.stats.reconnects += 1
                self.events.on_connection(
                    ConnectionStatus(ConnectionState.RECONNECTING, report.cause, delay, report)
                )
                log.info(
                    "reconnecting in %.1f s (attempt %d)",
                    delay,
                    self.policy.attempt,
                    extra={"RECONNECT_ATTEMPT": self.policy.attempt},
                )
                await asyncio.sleep(delay)
        finally:
            await self._dispatcher.stop_all()
            self.events.on_connection(ConnectionStatus(ConnectionState.STOPPED))


def _closed_by_us(exc: BaseException) -> Close | None:
    """The close frame this side sent first (a frame over the size limit, a protocol error,
    a keepalive time-out), found in ``exc``'s chain: the SDK turns a closure without the
    service's close frame into a 1006 APIError, hiding which side closed and why."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; bounded anyway
        if seen is None:
            return None
        if isinstance(seen, ConnectionClosed):
            return seen.sent if seen.sent is not None and seen.rcvd_then_sent is not True else None
        seen = seen.__cause__ or seen.__context__
    return None


async def _close_draining(ws: Connection, code: int) -> None:
    """Close with ``code`` while discarding what the service still sends: unread frames
    would hold back its close frame (flow control) until websockets' close time-out."""

    async def drain() -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.recv(decode=False)

    drainer = asyncio.create_task(drain(), name="live-drain")
    try:
        await ws.close(code, "protocol error")
    finally:
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
