"""The Live conversation without I/O: what arrived, what may leave, and what to do next.

:class:`LiveProtocol` owns what the session must know to keep the service's rules: the input
gate and the calls it waits for (each with its deadline), the turn in flight and its safe
points, the resumption handle, and the record a closure is explained from. It takes events
with the time they happened — a server message (:meth:`~LiveProtocol.receive`), a frame
offered for sending (:meth:`~LiveProtocol.offer`), a tool that finished
(:meth:`~LiveProtocol.tool_finished`), a cancellation, a tick of the clock, a closure — and
returns effects for the session to carry out, in order. No sockets, tasks or clock of its own:
every interleaving the race test drives over a socket can be driven here in a plain test.

The gate shuts as :meth:`~LiveProtocol.receive` returns for a ``toolCall`` (the caller has not
awaited anything yet) and opens on one path only, :meth:`~LiveProtocol._release`: reached from
an answer on the wire, a cancellation and a closure. A call past its deadline is not released
there: the connection is replaced, which drops it on the service's side, and the closure
releases it — opening the gate while the service still waits for the call would let input out
that it closes with 1008.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.live.diagnostics import Action, CloseContext, CloseReport, SentFrame, likely_cause
from services.live.gate import InputGate, Signal
from services.live.inbound import Content, FunctionCall, ServerMessage

log = logging.getLogger(__name__)

REALTIME_KINDS = frozenset({"audio", "activityStart", "activityEnd", "audioStreamEnd"})
# A blocking call's deadline is its tool's time-out plus this: the registry answers a tool that
# overruns with an error at its time-out, so only an answer that cannot leave gets this far.
DEADLINE_MARGIN_S = 2.0
# Server message fields this daemon does not use are named once each, up to this many.
MAX_UNKNOWN_FIELDS = 32
# Each call's first answer is kept, for a call the service replays after a resumption: the
# newest this many, for this long a fresh answer (an idempotent tool runs again after that).
REMEMBERED_ANSWERS = 64
ANSWER_FRESH_S = 60.0


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


@dataclass(frozen=True)
class Call:
    """A tool call the service waits for an answer to."""

    id: str
    name: str
    blocking: bool
    started: float
    deadline: float


@dataclass(frozen=True)
class Answer:
    """What a call's tool produced, kept for a replay of the same call id."""

    payload: dict[str, Any]
    at: float


# -- effects: what the session carries out, in the order given ------------------------------
@dataclass(frozen=True)
class SendSignal:
    """Send this activity signal now, before anything else is awaited (the gate counts it
    as sent)."""

    signal: Signal


@dataclass(frozen=True)
class StartTools:
    """Run these calls (id, name, args); the gate already accounts for them."""

    calls: tuple[tuple[str, str, Mapping[str, Any]], ...]


@dataclass(frozen=True)
class AnswerAgain:
    """Answer this replayed call with its first answer; its tool must not run again."""

    call_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class StopTools:
    """Stop these calls' tools and answer none of them."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class GateChanged:
    """The gate shut for ``calls`` (id, name), or opened (``calls`` empty)."""

    shut: bool
    calls: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BackgroundChanged:
    """The non-blocking calls running now (id, name); empty when none is left."""

    calls: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Deliver:
    """A piece of the model's turn for the listener: audio, interruption, text, its end."""

    content: Content


@dataclass(frozen=True)
class UsageReport:
    """The service's ``usageMetadata`` for a turn."""

    usage: dict[str, Any]


@dataclass(frozen=True)
class CloseConnection:
    """Close this connection, for ``cause`` (a key of the diagnostics' local causes)."""

    cause: str
    reason: str
    code: int | None = None


Effect = (
    SendSignal
    | StartTools
    | AnswerAgain
    | StopTools
    | GateChanged
    | BackgroundChanged
    | Deliver
    | UsageReport
    | CloseConnection
)


class LiveProtocol:
    """One Live conversation's rules and state, driven by events, answering with effects."""

    def __init__(
        self,
        *,
        manual_activity: bool,
        resumption: bool,
        stall_timeout_s: float,
        go_away_margin_s: float,
        blocking: Callable[[str], bool],
        time_limit_s: Callable[[str], float],
        idempotent: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.manual_activity = manual_activity
        self.resumption = resumption
        self.stall_timeout_s = stall_timeout_s
        self.go_away_margin_s = go_away_margin_s
        self._blocking = blocking
        self._time_limit_s = time_limit_s
        self._idempotent = idempotent
        self.gate = InputGate()
        self.stats = SessionStats()
        self.handle: str | None = None
        self.connected = False
        self._calls: dict[str, Call] = {}
        # Kept across connections: a replayed turn brings the same call ids back.
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._last_sent: deque[SentFrame] = deque(maxlen=8)
        self._last_response_size: int | None = None
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
        self._unanswered: str | None = None
        self._unknown_fields: set[str] = set()

    # -- what the session asks -------------------------------------------------------------
    def awaited(self, call_id: str) -> Call | None:
        """The call if the service still waits for its answer (not answered, cancelled or
        dropped with its connection)."""
        return self._calls.get(call_id)

    @property
    def calls(self) -> tuple[Call, ...]:
        """Every call the service waits for, blocking or not, oldest first."""
        return tuple(self._calls.values())

    def describe_state(self) -> str:
        """What the conversation is doing, in words, for logs and closure reports."""
        if self.gate.shut:
            return "tool-pending: " + ", ".join(sorted(set(self.gate.pending.values())))
        if self._model_speaking:
            return "model speaking"
        if self.gate.wire_activity:
            return "user speaking"
        if self._awaiting_since is not None:
            return "waiting for the model"
        return "idle" if self.connected else "disconnected"

    def safe_point(self) -> bool:
        """Nothing would be lost by reconnecting now."""
        if self.resumption and not self._resumable:
            return False
        return not (
            self.gate.shut
            or self.gate.running
            or self._model_speaking
            or self.gate.wire_activity
            or self._awaiting_since is not None
        )

    def model_turn_in_flight(self) -> bool:
        """The model owes an answer it is giving or about to give (a call may be pending)."""
        return self.gate.shut or self._model_speaking or self._awaiting_since is not None

    def request_at_risk(self) -> bool:
        """Would resuming now restore the conversation from before the user's turn in flight?"""
        if self._turn_at is None or not self.resumption:
            return False
        # Only a handle issued once the service had the whole turn covers it; in automatic mode
        # the service decides when that is, and a handle after its start is the best sign.
        covered_from = self._turn_at if not self.manual_activity else self._turn_end_at
        return covered_from is None or self._handle_at is None or self._handle_at < covered_from

    # -- events from the connection --------------------------------------------------------
    def opened(self, now: float) -> list[Effect]:
        """A connection is set up (``setupComplete``): bring the service up to the user."""
        self.connected = True
        self._last_rx = now
        signal = self.gate.resync()
        return [SendSignal(signal)] if signal is not None else []

    def receive(self, message: ServerMessage, now: float) -> list[Effect]:
        """One checked server message. A ``toolCall`` has shut the gate when this returns."""
        effects: list[Effect] = []
        self._last_rx = now
        for name in message.unknown:
            if name not in self._unknown_fields and len(self._unknown_fields) < MAX_UNKNOWN_FIELDS:
                self._unknown_fields.add(name)
                log.info("ignoring the server message field %r: this daemon does not use it", name)
        if message.usage is not None:
            effects.append(UsageReport(message.usage))
        update = message.resumption
        if update is not None:
            self._resumable = bool(update.resumable and update.new_handle)
            if self._resumable:
                self.handle = update.new_handle
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
            effects += self._tool_call(message.tool_calls, now)
        released: list[Effect] = []
        if message.cancelled_ids is not None:
            ids = tuple(message.cancelled_ids)
            effects.append(StopTools(ids))
            released = self.cancelled(ids)
        if message.content is not None:
            self._last_reply_at = now
            self._on_content(message.content)
            effects.append(Deliver(message.content))
        # What opened the gate goes out after the content it came with.
        effects += released
        if self._go_away_at is not None and self.safe_point():
            effects.append(CloseConnection("go-away", "reconnecting at a safe point after goAway"))
        return effects

    def cancelled(self, ids: Iterable[str]) -> list[Effect]:
        """The service cancelled these calls: none of them may be answered now."""
        ids = tuple(ids)
        log.info("tool calls cancelled by the service: %s", ", ".join(ids))
        return self._release(ids)

    def offer(self, kind: str, size: int, now: float) -> bool:
        """May a realtime frame (``audio`` or ``audioStreamEnd``) go now? If so it counts as
        sent; a refusal is counted as a dropped frame."""
        if not self.gate.admit(kind):
            return False
        self.sent(kind, size, now)
        return True

    def activity(self, active: bool) -> Signal | None:
        """The user started (or stopped) speaking: the signal to send now, if any."""
        return self.gate.request_activity(active)

    def sent(self, kind: str, size: int, now: float, *, awaits_reply: bool = False) -> None:
        """A frame of ``kind`` left (``awaits_reply``: a blocking call's answer, owed a reply)."""
        self._last_sent.append(SentFrame(kind, size, now))
        self.stats.frames_sent += 1
        if kind in REALTIME_KINDS and self.gate.shut:
            self.stats.sent_while_shut += 1
        if kind == "audio":
            if not self.manual_activity and self._turn_at is None:
                self._turn_at = now
        elif kind == Signal.START:
            if self._turn_at is None or self._turn_end_at is not None:
                self._turn_at, self._turn_end_at = now, None
        elif kind == Signal.END:
            self._awaiting_since = self._turn_end_at = now
        elif kind == "audioStreamEnd":
            self._awaiting_since = now
        elif kind == "toolResponse":
            self._last_response_size = size
            # A non-blocking call's answer (SILENT, say) may rightly get no reply, so it must
            # not arm the stall watchdog.
            if awaits_reply:
                self._awaiting_since = now

    def tool_finished(
        self,
        call_id: str,
        answered: bool,
        payload: dict[str, Any] | None,
        now: float,
    ) -> list[Effect]:
        """A call's tool ended with ``payload`` (None: it did not run), and its answer is on
        the wire (``answered``) or could not be sent.

        The payload is kept for a replay of the call id, whether or not the answer left. An
        unanswerable blocking call keeps the gate shut: :meth:`tick` replaces the connection,
        which drops the call on the service's side."""
        call = self._calls.get(call_id)
        if payload is not None and call_id not in self._answers:
            self._answers[call_id] = Answer(payload, now)
            while len(self._answers) > REMEMBERED_ANSWERS:
                self._answers.popitem(last=False)
        if call is None:
            return []  # cancelled, abandoned or its connection gone meanwhile: nothing is owed
        if not answered:
            log.error(
                "tool %s (%s) could not be answered: the connection is replaced to drop it "
                "(a blocking call keeps input gated until then)",
                call.name,
                call_id,
            )
            self._unanswered = call_id
            return []
        return self._release((call_id,))

    def tick(self, now: float) -> list[Effect]:
        """The clock moved on: close the connection on a stall, an unanswerable or overdue
        call, or a goAway deadline."""
        if self._unanswered is not None:
            return [
                CloseConnection("unanswered", f"tool call {self._unanswered} cannot be answered")
            ]
        overdue = [c for c in self._calls.values() if c.blocking and now >= c.deadline]
        if overdue:
            for call in overdue:
                log.warning(
                    "tool call %s (%s) abandoned: no answer left within %.1f s; the connection "
                    "is replaced to drop it and the input gate opens",
                    call.name,
                    call.id,
                    call.deadline - call.started,
                    extra={
                        "TOOL_NAME": call.name,
                        "TOOL_CALL_ID": call.id,
                        "TOOL_ABANDONED": "deadline",
                    },
                )
            names = ", ".join(f"{c.name} ({c.id})" for c in overdue)
            return [
                StopTools(tuple(c.id for c in overdue)),
                CloseConnection("abandoned", f"no answer to {names} by its deadline"),
            ]
        if self._awaiting_since is not None:
            quiet = now - max(self._last_rx, self._awaiting_since)
            if quiet > self.stall_timeout_s:
                return [CloseConnection("stall", f"no frames for {quiet:.1f} s")]
        # A turn in flight gets until the deadline itself: it ends with its turnComplete (a
        # safe point), and if not, the service's own closure costs no more than ours.
        margin = 0.0 if self.model_turn_in_flight() else self.go_away_margin_s
        if self._go_away_at is not None and now >= self._go_away_at - margin:
            return [
                CloseConnection("go-away-deadline", "goAway deadline reached without a safe point")
            ]
        return []

    def close_report(
        self, code: int | None, reason: str, cause: str | None, now: float
    ) -> CloseReport:
        """The connection ended with ``code``/``reason`` (``cause``: decided on this side):
        what it most likely means, from what the conversation knew at that moment."""
        context = CloseContext(
            state=self.describe_state(),
            pending=tuple(
                (c.id, c.name, now - c.started) for c in self._calls.values() if c.blocking
            ),
            last_sent=tuple(self._last_sent),
            last_tool_response_size=self._last_response_size,
            input_sent_while_pending=self.stats.sent_while_shut,
            go_away_seen=self._go_away_at is not None,
            local_cause=cause,
            at=now,
            last_reply_at=self._last_reply_at,
        )
        text, action = likely_cause(code, reason, context)
        if action is Action.RESUME and self.request_at_risk():
            log.warning(
                "the newest resumption handle is older than the user's turn in flight: "
                "resuming may lose that request",
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

    def closed(self) -> list[Effect]:
        """The connection is gone: the service forgets every call with it, so the gate
        opens; the next connection starts from no activity on the wire."""
        self.connected = False
        effects = self._release(tuple(self._calls), resync=False)
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
        return effects

    def forget_handle(self) -> None:
        """The handle is stale: the next connection starts a new conversation."""
        self.handle = None

    # -- inside ----------------------------------------------------------------------------
    def _tool_call(self, function_calls: tuple[FunctionCall, ...], now: float) -> list[Effect]:
        calls = [(fc.id, fc.name, fc.args) for fc in function_calls]
        # An id still awaiting its answer is already running: a second run would drive the
        # tool twice and leave a task the dispatcher no longer tracks.
        repeated = [call_id for call_id, _, _ in calls if call_id in self._calls]
        if repeated:
            log.error("ignoring a repeated toolCall for calls still running: %s", repeated[:8])
            calls = [c for c in calls if c[0] not in repeated]
            if not calls:
                return []
        effects: list[Effect] = []
        for call_id, name, _ in calls:
            blocking = self._blocking(name)
            limit = self._time_limit_s(name) + DEADLINE_MARGIN_S
            self._calls[call_id] = Call(call_id, name, blocking, now, now + limit)
        again = self._answered_before(calls, now)
        # Only blocking calls shut the gate, and they do so before anything is awaited.
        pairs = tuple((c, n) for c, n, _ in calls if self._calls[c].blocking)
        background = tuple((c, n) for c, n, _ in calls if not self._calls[c].blocking)
        if pairs:
            self.gate.shut_for(pairs)
            effects.append(GateChanged(True, pairs))
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
            effects.append(BackgroundChanged(tuple(self.gate.running.items())))
        effects += [AnswerAgain(call_id, payload) for call_id, payload in again.items()]
        if fresh := tuple(c for c in calls if c[0] not in again):
            effects.append(StartTools(fresh))
        return effects

    def _answered_before(
        self, calls: list[tuple[str, str, Mapping[str, Any]]], now: float
    ) -> dict[str, dict[str, Any]]:
        """The calls a resumption replayed whose first answer they get again: every one whose
        tool is not idempotent (it never runs twice for one id), and the idempotent ones while
        that answer is fresh."""
        again: dict[str, dict[str, Any]] = {}
        for call_id, name, _ in calls:
            first = self._answers.get(call_id)
            if first is None:
                continue
            age = now - first.at
            if self._idempotent(name) and age > ANSWER_FRESH_S:
                log.info(
                    "tool call %s (%s) replayed after %.0f s: running it again (idempotent)",
                    name,
                    call_id,
                    age,
                    extra={"TOOL_NAME": name, "TOOL_CALL_ID": call_id},
                )
                continue
            log.info(
                "tool call %s (%s) replayed after a resumption: answering with its first "
                "result (%.1f s old), not running it again",
                name,
                call_id,
                age,
                extra={"TOOL_NAME": name, "TOOL_CALL_ID": call_id},
            )
            again[call_id] = first.payload
        return again

    def _on_content(self, content: Content) -> None:
        if content.audio:
            self._model_speaking = True
        if content.interrupted:
            self._model_speaking = False
        if content.turn_complete:
            self._model_speaking = False
            self._awaiting_since = None
            self._turn_at = self._turn_end_at = None

    def _release(self, ids: tuple[str, ...], *, resync: bool = True) -> list[Effect]:
        """The one path that opens the gate: these calls need no answer any more."""
        background = any(call_id in self.gate.running for call_id in ids)
        for call_id in ids:
            self._calls.pop(call_id, None)
        opened = self.gate.resolve(ids)
        effects: list[Effect] = []
        if opened:
            log.debug("input gate open")
            effects.append(GateChanged(False))
        if background:
            effects.append(BackgroundChanged(tuple(self.gate.running.items())))
        # Last: the signal is the one effect the session awaits.
        if opened and resync and (signal := self.gate.resync()) is not None:
            effects.append(SendSignal(signal))
        return effects
