"""The Live session: one object that owns the WebSocket to Gemini Live.

Every realtime input goes through one send path guarded by the :class:`InputGate`. The receive
loop reads raw frames, passes each through the one boundary (:mod:`services.live.inbound`: a
malformed frame closes the connection as a protocol error, then the session resumes) and
handles each checked message synchronously, so a ``toolCall`` shuts the gate before any other
task can run. Closures are explained (:mod:`services.live.diagnostics`) and answered by
the reconnect policy: resume with the newest handle, start fresh when the handle is stale, or
stop with a clear error when retrying cannot help.
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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from google import genai
from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import Close

from services.live.diagnostics import Action, CloseContext, CloseReport, SentFrame, likely_cause
from services.live.dispatch import ToolDispatcher
from services.live.gate import InputGate, Signal
from services.live.inbound import (
    Content,
    FrameBudget,
    FunctionCall,
    ProtocolError,
    ServerMessage,
    excerpt,
    parse_server_frame,
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
from services.tools.registry import Behavior, ToolRegistry

log = logging.getLogger(__name__)

REALTIME_KINDS = frozenset({"audio", "activityStart", "activityEnd", "audioStreamEnd"})
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


@dataclass
class SessionStats:
    """Counters for health lines and benchmarks."""

    frames_sent: int = 0
    frames_offline: int = 0
    sent_while_shut: int = 0
    tool_calls: int = 0
    reconnects: int = 0
    protocol_errors: Counter[str] = field(default_factory=Counter)
    closures: Counter[int | None] = field(default_factory=Counter)


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
        self.gate = InputGate()
        self.stats = SessionStats()
        self.policy = ReconnectPolicy(settings.backoff, rng or random.Random())
        self.closures: deque[CloseReport] = deque(maxlen=32)
        self.session_id = uuid.uuid4().hex[:12]
        self._client = client or build_client(settings, api_key)
        self._clock = clock
        self._session: AsyncSession | None = None
        self._handle: str | None = None
        self._last_sent: deque[SentFrame] = deque(maxlen=8)
        self._last_response_size: int | None = None
        self._call_started: dict[str, float] = {}
        self._last_rx = 0.0
        self._awaiting_since: float | None = None
        self._model_speaking = False
        self._go_away_at: float | None = None
        # The newest handle restores the conversation as it is now (nothing in progress).
        self._resumable = False
        self._handle_at: float | None = None
        # When the user's turn now in flight began and ended on the wire (the end only in manual
        # mode); None once the model completed it.
        self._turn_at: float | None = None
        self._turn_end_at: float | None = None
        self._last_reply_at: float | None = None
        self._local_cause: str | None = None
        self._unknown_fields: set[str] = set()
        self._unanswered: str | None = None
        self._connected = asyncio.Event()
        self._mime = f"audio/pcm;rate={settings.input_rate}"
        self._dispatcher = ToolDispatcher(
            tools,
            self.gate,
            send=self._send_tool_response,
            gate_opened=self._gate_opened,
            on_result=self.events.on_tool_result,
            cap_chars=settings.response_cap_chars,
            max_bytes=settings.max_response_bytes,
            background_changed=self._background_changed,
            unanswerable=self._unanswerable,
        )

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

    def _note_sent(self, kind: str, size: int) -> None:
        self._last_sent.append(SentFrame(kind, size, self._clock()))
        self.stats.frames_sent += 1
        if kind in REALTIME_KINDS and self.gate.shut:
            self.stats.sent_while_shut += 1

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
        if not self.gate.admit("audio"):
            return False
        if not self.settings.manual_activity and self._turn_at is None:
            self._turn_at = self._clock()
        self._note_sent("audio", len(pcm))
        blob = types.Blob(data=pcm, mime_type=self._mime)
        return await self._guarded(session.send_realtime_input(audio=blob))

    async def set_activity(self, active: bool) -> None:
        """The user started or stopped speaking (manual turn taking)."""
        await self._inbound_first()
        signal = self.gate.request_activity(active)
        if signal is not None:
            await self._send_signal(signal)

    async def end_audio_stream(self) -> bool:
        """Tell the service the mic paused (automatic activity detection only)."""
        session = await self._inbound_first()
        if self.settings.manual_activity:
            log.warning("audioStreamEnd is for automatic activity detection; not sent")
            return False
        if session is None or not self.gate.admit("audioStreamEnd"):
            return False
        self._note_sent("audioStreamEnd", 0)
        self._awaiting_since = self._clock()
        return await self._guarded(session.send_realtime_input(audio_stream_end=True))

    async def _send_signal(self, signal: Signal) -> None:
        session = self._session
        if session is None:
            return
        self._note_sent(signal.value, 0)
        if signal is Signal.START:
            if self._turn_at is None or self._turn_end_at is not None:
                self._turn_at, self._turn_end_at = self._clock(), None
            await self._guarded(session.send_realtime_input(activity_start=types.ActivityStart()))
        else:
            self._awaiting_since = self._turn_end_at = self._clock()
            await self._guarded(session.send_realtime_input(activity_end=types.ActivityEnd()))

    async def _send_tool_response(self, response: types.FunctionResponse, size: int) -> bool:
        session = self._session
        if session is None:
            return False
        self._note_sent("toolResponse", size)
        self._last_response_size = size
        if response.scheduling is None:
            # A blocking call's answer is owed a reply; a non-blocking one (SILENT, say) may
            # rightly get none, so it must not arm the stall watchdog.
            self._awaiting_since = self._clock()
        return await self._guarded(session.send_tool_response(function_responses=[response]))

    async def _guarded(self, send: Any) -> bool:
        try:
            await send
        except (ConnectionClosed, errors.APIError) as exc:
            # The receive loop sees the same closure and reports it once.
            log.debug("send failed on a closing connection: %s", exc)
            return False
        return True

    def _background_changed(self) -> None:
        self.events.on_background(tuple(self.gate.running.items()))

    def _blocking(self, name: str) -> bool:
        """Does a call of ``name`` shut the gate? A name we never declared does: the safe side."""
        behavior = self.behaviors.get(name, (Behavior.BLOCKING, None))[0]
        return behavior is Behavior.BLOCKING

    async def _gate_opened(self) -> None:
        log.debug("input gate open")
        self.events.on_gate(False, ())
        signal = self.gate.resync()
        if signal is not None:
            await self._send_signal(signal)

    def _unanswerable(self, call_id: str) -> None:
        # The watchdog replaces the connection: the service drops the call with it.
        self._unanswered = call_id

    # -- the receive side ------------------------------------------------------------------
    def describe_state(self) -> str:
        """What the session is doing, in words, for logs and closure reports."""
        if self.gate.shut:
            return "tool-pending: " + ", ".join(sorted(set(self.gate.pending.values())))
        if self._model_speaking:
            return "model speaking"
        if self.gate.wire_activity:
            return "user speaking"
        if self._awaiting_since is not None:
            return "waiting for the model"
        return "idle" if self.connected else "disconnected"

    def _on_message(self, message: ServerMessage) -> bool:
        """Handle one checked server message without awaiting. True if a cancellation opened
        the gate."""
        now = self._clock()
        self._last_rx = now
        for name in message.unknown:
            if name not in self._unknown_fields and len(self._unknown_fields) < 32:
                self._unknown_fields.add(name)
                log.info("ignoring the server message field %r: this daemon does not use it", name)
        if message.usage is not None:
            self.events.on_usage(message.usage)
        update = message.resumption
        if update is not None:
            self._resumable = bool(update.resumable and update.new_handle)
            if self._resumable:
                self._handle = update.new_handle
                self._handle_at = now
        if message.go_away_s is not None:
            left = message.go_away_s
            self._go_away_at = now + left
            log.info(
                "service sent goAway: %.1f s left; reconnecting at the next safe point or when "
                "the turn in flight completes",
                left,
            )
        if message.tool_calls:
            self._on_tool_call(message.tool_calls)
        opened = False
        if message.cancelled_ids is not None:
            opened = self._dispatcher.cancel(list(message.cancelled_ids))
        if message.content is not None:
            self._last_reply_at = now
            self._on_content(message.content)
        return opened

    def _on_tool_call(self, function_calls: tuple[FunctionCall, ...]) -> None:
        calls = [(fc.id, fc.name, fc.args) for fc in function_calls]
        # An id still awaiting its answer is already running: a second run would drive the
        # tool twice and leave a task the dispatcher no longer tracks.
        repeated = [call_id for call_id, _, _ in calls if self.gate.name_of(call_id) is not None]
        if repeated:
            log.error("ignoring a repeated toolCall for calls still running: %s", repeated[:8])
            calls = [c for c in calls if c[0] not in repeated]
            if not calls:
                return
        # Only blocking calls shut the gate, and they do so before anything is awaited.
        pairs = tuple((call_id, name) for call_id, name, _ in calls if self._blocking(name))
        background = tuple(
            (call_id, name) for call_id, name, _ in calls if not self._blocking(name)
        )
        if pairs:
            now = self._clock()
            self._call_started = {
                call_id: self._call_started.get(call_id, now) for call_id in self.gate.pending
            }
            self._call_started.update((call_id, now) for call_id, _ in pairs)
            self.gate.shut_for(pairs)
            self.events.on_gate(True, pairs)
        self.stats.tool_calls += len(calls)
        for call_id, name in pairs:
            log.info(
                "tool call %s (%s): input gate shut",
                name,
                call_id,
                extra={"TOOL_NAME": name, "TOOL_CALL_ID": call_id, "LIVE_STATE": "tool-pending"},
            )
        if background:
            self.gate.run_for(background)
            for call_id, name in background:
                log.info(
                    "tool call %s (%s): non-blocking, input keeps flowing",
                    name,
                    call_id,
                    extra={"TOOL_NAME": name, "TOOL_CALL_ID": call_id},
                )
            self._background_changed()
        self._dispatcher.start(calls)

    def _on_content(self, content: Content) -> None:
        for pcm in content.audio:
            self._model_speaking = True
            self.events.on_audio(pcm)
        if content.interrupted:
            self._model_speaking = False
            self.events.on_interrupted()
        if content.input_text:
            self.events.on_transcript("user", content.input_text)
        if content.output_text:
            self.events.on_transcript("model", content.output_text)
        if content.turn_complete:
            self._model_speaking = False
            self._awaiting_since = None
            self._turn_at = self._turn_end_at = None
            self.events.on_turn_complete()

    def _safe_point(self) -> bool:
        """Nothing would be lost by reconnecting now."""
        if self.settings.resumption and not self._resumable:
            return False
        return not (
            self.gate.shut
            or self.gate.running
            or self._model_speaking
            or self.gate.wire_activity
            or self._awaiting_since is not None
        )

    def _model_turn_in_flight(self) -> bool:
        """The model owes an answer it is giving or about to give (a call may be pending)."""
        return self.gate.shut or self._model_speaking or self._awaiting_since is not None

    def _request_at_risk(self) -> bool:
        """Would resuming now restore the conversation from before the user's turn in flight?"""
        if self._turn_at is None or not self.settings.resumption:
            return False
        # Only a handle issued once the service had the whole turn covers it; in automatic mode
        # the service decides when that is, and a handle after its start is the best sign.
        covered_from = self._turn_at if not self.settings.manual_activity else self._turn_end_at
        return covered_from is None or self._handle_at is None or self._handle_at < covered_from

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
            if self._on_message(message):
                await self._gate_opened()
            if self._go_away_at is not None and self._safe_point():
                raise _LocalClose("go-away", "reconnecting at a safe point after goAway")

    def _protocol_error(self, exc: ProtocolError) -> NoReturn:
        """Count a frame that failed the boundary and close the connection for it; the
        closure's report (logged once) carries the kind, size and first bytes."""
        self.stats.protocol_errors[exc.kind] += 1
        raise _LocalClose("protocol-error", str(exc), _CLOSE_CODES.get(exc.kind, 1002)) from exc

    async def _watchdog(self) -> None:
        """Stop the connection on a silent stall or when a goAway deadline is near."""
        while True:
            await asyncio.sleep(0.1)
            now = self._clock()
            if self._unanswered is not None:
                raise _LocalClose("unanswered", f"tool call {self._unanswered} cannot be answered")
            if self._awaiting_since is not None:
                quiet = now - max(self._last_rx, self._awaiting_since)
                if quiet > self.settings.stall_timeout_s:
                    raise _LocalClose("stall", f"no frames for {quiet:.1f} s")
            # A turn in flight gets until the deadline itself: it ends with its turnComplete (a
            # safe point), and if not, the service's own closure costs no more than ours.
            margin = 0.0 if self._model_turn_in_flight() else self.settings.go_away_margin_s
            if self._go_away_at is not None and now >= self._go_away_at - margin:
                raise _LocalClose(
                    "go-away-deadline", "goAway deadline reached without a safe point"
                )

    # -- a connection's life ---------------------------------------------------------------
    async def _serve(self) -> None:
        config = build_config(self.settings, self.tools, self._handle)
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
            self._last_rx = self._clock()
            self._connected.set()
            log.info(
                "connected to %s (%s)",
                self.settings.model,
                "resumed" if self._handle else "new conversation",
                extra={"SESSION_ID": self.session_id},
            )
            self.events.on_connection(ConnectionStatus(ConnectionState.CONNECTED))
            signal = self.gate.resync()
            if signal is not None:
                await self._send_signal(signal)
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
        now = self._clock()
        context = CloseContext(
            state=self.describe_state(),
            pending=tuple(
                (call_id, name, now - self._call_started.get(call_id, now))
                for call_id, name in self.gate.pending.items()
            ),
            last_sent=tuple(self._last_sent),
            last_tool_response_size=self._last_response_size,
            input_sent_while_pending=self.stats.sent_while_shut,
            go_away_seen=self._go_away_at is not None,
            local_cause=cause or self._local_cause,
            at=now,
            last_reply_at=self._last_reply_at,
        )
        text, action = likely_cause(code, reason, context)
        if action is Action.RESUME and self._request_at_risk():
            log.warning(
                "the newest resumption handle is older than the user's turn in flight: "
                "resuming may lose that request",
                extra={"SESSION_ID": self.session_id},
            )
        return CloseReport(
            code=code,
            reason=reason,
            context=context,
            cause=text,
            action=action,
            at=now,
            frames_before=tuple((f.kind, f.size, 1000 * (now - f.at)) for f in self._last_sent),
        )

    async def _disconnected(self) -> None:
        was_shut = self.gate.shut
        was_running = bool(self.gate.running)
        self._session = None
        self._connected.clear()
        await self._dispatcher.stop_all()
        self.gate.new_connection()
        self._model_speaking = False
        self._awaiting_since = None
        self._go_away_at = None
        self._unanswered = None
        self._resumable = False
        self._handle_at = None
        self._turn_at = self._turn_end_at = None
        self._last_reply_at = None
        self._last_sent.clear()
        self._last_response_size = None
        self._call_started.clear()
        if was_shut:
            self.events.on_gate(False, ())
        if was_running:
            self.events.on_background(())

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
                    self._handle = None
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
