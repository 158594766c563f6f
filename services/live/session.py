"""The Live session: one object that owns the WebSocket to Gemini Live.

Every realtime input goes through one send path guarded by the :class:`InputGate`. The receive
loop handles each server message synchronously, so a ``toolCall`` shuts the gate before any
other task can run. Closures are explained (:mod:`services.live.diagnostics`) and answered by
the reconnect policy: resume with the newest handle, start fresh when the handle is stale, or
stop with a clear error when retrying cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google import genai
from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from services.live.diagnostics import Action, CloseContext, CloseReport, SentFrame, likely_cause
from services.live.dispatch import ToolDispatcher
from services.live.gate import InputGate, Signal
from services.live.reconnect import ReconnectPolicy
from services.live.settings import LiveSettings, build_client, build_config
from services.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

REALTIME_KINDS = frozenset({"audio", "activityStart", "activityEnd", "audioStreamEnd"})


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
        self._local_cause: str | None = None
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
        )

    # -- the send path ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is set up and serving."""
        return self._session is not None

    async def wait_connected(self) -> None:
        """Wait until a connection is set up."""
        await self._connected.wait()

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
            if session is None or not _unread_frames(session):
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
            await self._guarded(session.send_realtime_input(activity_start=types.ActivityStart()))
        else:
            self._awaiting_since = self._clock()
            await self._guarded(session.send_realtime_input(activity_end=types.ActivityEnd()))

    async def _send_tool_response(self, response: types.FunctionResponse, size: int) -> bool:
        session = self._session
        if session is None:
            return False
        self._note_sent("toolResponse", size)
        self._last_response_size = size
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

    async def _gate_opened(self) -> None:
        log.debug("input gate open")
        self.events.on_gate(False, ())
        signal = self.gate.resync()
        if signal is not None:
            await self._send_signal(signal)

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

    def _on_message(self, message: types.LiveServerMessage) -> bool:
        """Handle one server message without awaiting. True if a cancellation opened the gate."""
        now = self._clock()
        self._last_rx = now
        update = message.session_resumption_update
        if update is not None:
            self._resumable = bool(update.resumable and update.new_handle)
            if self._resumable:
                self._handle = update.new_handle
        if message.go_away is not None:
            left = _seconds(message.go_away.time_left)
            self._go_away_at = now + left
            log.info("service sent goAway: %.1f s left; reconnecting at the next safe point", left)
        if message.tool_call is not None:
            self._on_tool_call(message.tool_call)
        opened = False
        if message.tool_call_cancellation is not None:
            opened = self._dispatcher.cancel(list(message.tool_call_cancellation.ids or []))
        content = message.server_content
        if content is not None:
            self._on_content(content)
        return opened

    def _on_tool_call(self, tool_call: types.LiveServerToolCall) -> None:
        calls = [
            (fc.id, fc.name, fc.args or {})
            for fc in tool_call.function_calls or []
            if fc.id and fc.name
        ]
        skipped = len(tool_call.function_calls or []) - len(calls)
        if skipped:
            log.error("ignoring %d function call(s) without id or name", skipped)
        if not calls:
            return
        pairs = tuple((call_id, name) for call_id, name, _ in calls)
        now = self._clock()
        self._call_started = {
            call_id: self._call_started.get(call_id, now) for call_id in self.gate.pending
        }
        self._call_started.update((call_id, now) for call_id, _ in pairs)
        self.gate.shut_for(pairs)
        self.events.on_gate(True, pairs)
        self.stats.tool_calls += len(calls)
        for call_id, name, _ in calls:
            log.info(
                "tool call %s (%s): input gate shut",
                name,
                call_id,
                extra={"TOOL_NAME": name, "TOOL_CALL_ID": call_id, "LIVE_STATE": "tool-pending"},
            )
        self._dispatcher.start(calls)

    def _on_content(self, content: types.LiveServerContent) -> None:
        if content.model_turn is not None:
            for part in content.model_turn.parts or []:
                if part.inline_data is not None and part.inline_data.data:
                    self._model_speaking = True
                    self.events.on_audio(part.inline_data.data)
        if content.interrupted:
            self._model_speaking = False
            self.events.on_interrupted()
        if content.input_transcription is not None and content.input_transcription.text:
            self.events.on_transcript("user", content.input_transcription.text)
        if content.output_transcription is not None and content.output_transcription.text:
            self.events.on_transcript("model", content.output_transcription.text)
        if content.turn_complete:
            self._model_speaking = False
            self._awaiting_since = None
            self.events.on_turn_complete()

    def _safe_point(self) -> bool:
        """Nothing would be lost by reconnecting now."""
        if self.settings.resumption and not self._resumable:
            return False
        return not (
            self.gate.shut
            or self._model_speaking
            or self.gate.wire_activity
            or self._awaiting_since is not None
        )

    async def _receive(self, session: AsyncSession) -> None:
        while True:
            async for message in session.receive():
                if self._on_message(message):
                    await self._gate_opened()
                if self._go_away_at is not None and self._safe_point():
                    raise _LocalClose("go-away", "reconnecting at a safe point after goAway")

    async def _watchdog(self) -> None:
        """Stop the connection on a silent stall or when a goAway deadline is near."""
        while True:
            await asyncio.sleep(0.1)
            now = self._clock()
            if self._awaiting_since is not None:
                quiet = now - max(self._last_rx, self._awaiting_since)
                if quiet > self.settings.stall_timeout_s:
                    raise _LocalClose("stall", f"no frames for {quiet:.1f} s")
            if (
                self._go_away_at is not None
                and now >= self._go_away_at - self.settings.go_away_margin_s
            ):
                raise _LocalClose("go-away", "goAway deadline reached without a safe point")

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
            except (_LocalClose, asyncio.CancelledError):
                # Leaving the SDK's context with an exception would close with 1011; a
                # closure we chose is a normal one (1000).
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await session.close()
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
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            reason = exc.rcvd.reason if exc.rcvd else ""
        except InvalidStatus as exc:
            cause, reason = "refused", f"HTTP {exc.response.status_code}"
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
        )
        text, action = likely_cause(code, reason, context)
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
        self._session = None
        self._connected.clear()
        await self._dispatcher.stop_all()
        self.gate.new_connection()
        self._model_speaking = False
        self._awaiting_since = None
        self._go_away_at = None
        self._resumable = False
        self._last_sent.clear()
        self._last_response_size = None
        self._call_started.clear()
        if was_shut:
            self.events.on_gate(False, ())

    def _log_closure(self, report: CloseReport) -> None:
        level = {
            Action.STOP: logging.INFO,
            Action.RESUME: logging.WARNING,
            Action.FRESH: logging.WARNING,
            Action.FATAL: logging.ERROR,
        }[report.action]
        if report.context.local_cause == "go-away":
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
        self.events.on_connection(ConnectionStatus(ConnectionState.CONNECTING))
        try:
            while True:
                report = await self._one_connection()
                self.closures.append(report)
                self.stats.closures[report.code] += 1
                self._log_closure(report)
                if report.action is Action.FRESH:
                    self._handle = None
                    self.session_id = uuid.uuid4().hex[:12]
                    log.warning("starting a fresh session: the conversation context is lost")
                delay = self.policy.next_delay(report.action)
                if report.context.local_cause == "go-away":
                    delay = 0.0
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


def _unread_frames(session: AsyncSession) -> bool:
    """True when a server frame has arrived but the receive loop has not read it yet.

    Reads the pinned websockets connection's incoming queue through the SDK's session; if a
    future version moves either, this answers False and the send path works as before (the
    test suite checks that it still sees frames)."""
    assembler = getattr(getattr(session, "_ws", None), "recv_messages", None)
    frames = getattr(assembler, "frames", None)
    try:
        return frames is not None and len(frames) > 0
    except TypeError:
        return False


def _seconds(duration: str | None) -> float:
    """Parse a protobuf duration such as ``"50s"`` or ``"0.5s"``."""
    if not duration:
        return 0.0
    try:
        return float(duration.rstrip("s"))
    except ValueError:
        return 0.0
