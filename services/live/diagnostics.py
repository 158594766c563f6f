"""What a closure most likely means, and the record that says so.

The service's closures say almost nothing ("1011 Internal error occurred."). The session
knows much more — what it was doing, what it last sent, which calls were pending — and
:func:`likely_cause` turns that into plain words from a table of the known closures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

REASON_NOT_SUPPORTED = "Operation is not implemented, or supported, or enabled."
REASON_NOT_FOUND = "Requested entity was not found."
REASON_SESSION_NOT_FOUND = "BidiGenerateContent session not found"
REASON_DEADLINE = "Deadline expired before operation could complete."
REASON_INTERNAL = "Internal error occurred."


class Action(StrEnum):
    """What the session does after a closure."""

    RESUME = "resume"  # reconnect with the newest handle, after a back-off
    FRESH = "fresh"  # the handle is gone: start a new conversation
    FATAL = "fatal"  # configuration or credentials: retrying cannot help
    STOP = "stop"  # we closed it on purpose


@dataclass(frozen=True)
class SentFrame:
    """A frame the session sent: kind, size, and when (monotonic seconds)."""

    kind: str
    size: int
    at: float


@dataclass(frozen=True)
class CloseContext:
    """What the session knew at the moment of the closure."""

    state: str
    pending: tuple[tuple[str, str, float], ...] = ()  # (id, name, seconds pending)
    last_sent: tuple[SentFrame, ...] = ()
    last_tool_response_size: int | None = None
    input_sent_while_pending: int = 0
    go_away_seen: bool = False
    local_cause: str | None = None  # "stall", "go-away", "shutdown", "connect-timeout", ...
    at: float = 0.0  # when the closure came (monotonic seconds, as SentFrame.at)
    last_reply_at: float | None = None  # when the model last sent content (audio, turnComplete)


@dataclass(frozen=True)
class CloseReport:
    """One closure, explained."""

    code: int | None
    reason: str
    context: CloseContext
    cause: str
    action: Action
    at: float = 0.0
    frames_before: tuple[tuple[str, int, float], ...] = field(default=())

    def summary(self) -> str:
        """A one-line account for a log record or a status line."""
        pending = ", ".join(
            f"{name} ({cid}, {age:.1f} s)" for cid, name, age in self.context.pending
        )
        sent = ", ".join(f"{k} {size} B {ms:.0f} ms before" for k, size, ms in self.frames_before)
        parts = [
            f"closed {self.code if self.code is not None else '-'} {self.reason!r}",
            f"while {self.context.state}",
            f"pending: {pending or 'none'}",
            f"last sent: {sent or 'nothing'}",
        ]
        if self.context.last_tool_response_size is not None:
            parts.append(f"last tool response {self.context.last_tool_response_size} B")
        parts.append(f"likely cause: {self.cause}")
        parts.append(f"next: {self.action.value}")
        return "; ".join(parts)


# Closures decided on this side, by the session's own cause name.
LOCAL_CAUSES: dict[str, tuple[str, Action]] = {
    "shutdown": ("closed by this device on shutdown", Action.STOP),
    "stall": (
        "no frames from the service while waiting for it: silent stall, reconnecting",
        Action.RESUME,
    ),
    "go-away": (
        "the service announced the end of the connection (goAway): reconnected at a safe point",
        Action.RESUME,
    ),
    "go-away-deadline": (
        "the service announced the end of the connection (goAway) and no safe point came "
        "before its deadline: reconnecting, what was in progress may be lost",
        Action.RESUME,
    ),
    "connect-timeout": (
        "the service did not answer the setup in time: network or service down",
        Action.RESUME,
    ),
    "unreachable": ("could not reach the service: network down or wrong endpoint", Action.RESUME),
    # Kept resuming: a Pi without a clock battery boots with a wrong time, which makes every
    # certificate look invalid until NTP has set it.
    "tls": (
        "TLS with the service failed: its certificate is not trusted here (check [live] "
        "endpoint and ca_file) or this device's clock is wrong",
        Action.RESUME,
    ),
    "unanswered": (
        "a tool call could not be answered: replaced the connection to drop it",
        Action.RESUME,
    ),
    "abandoned": (
        "a blocking tool call had no answer by its deadline: abandoned it and replaced the "
        "connection to drop it",
        Action.RESUME,
    ),
    "protocol-error": (
        "the service sent a frame this device cannot use (protocol error): reconnecting",
        Action.RESUME,
    ),
    # Retrying cannot mend an SDK whose internals moved: the device shows its error pattern.
    "seam": (
        "the SDK internals the receive loop reads have moved (an upgrade past "
        "requirements.lock): reinstall the pinned versions",
        Action.FATAL,
    ),
    "refused": (
        "the service refused the connection: check the endpoint and API version",
        Action.FATAL,
    ),
}
# Closures this device's WebSocket decided (it sent the close frame first), by code: without
# this the SDK reports them as 1006, "network down".
CLIENT_CLOSES: dict[int, str] = {
    1009: "a message from the service exceeded this device's frame size limit",
    1002: "the service broke the WebSocket protocol",
    1007: "the service sent a text frame that is not valid UTF-8",
    1011: "this device's WebSocket failed internally",
}
KEEPALIVE = "keepalive pings went unanswered: network dropped or the event loop was blocked"
GATING_BUG = "realtime input sent during a pending tool call: client gating bug"
ID_MISMATCH = (
    "tool response with an id or name the service does not know "
    "(id/name mismatch, or an answer to a cancelled call)"
)
STALE_HANDLE = "stale resumption handle: starting a fresh session, the conversation context is lost"
BAD_KEY = "the API key is not valid: check the credential"
NO_KEY = "no API key reached the service: check the credential"
ACTIVITY_MISMATCH = (
    "activity signals sent while automatic activity detection is on: configuration mismatch"
)
INVALID = "the service rejected a message as invalid (bad argument in the setup or a frame)"
DEADLINE_AFTER_GO_AWAY = "server deadline after goAway: reconnecting"
INTERNAL_AFTER_RESPONSE = (
    "internal error right after a tool response ({size} B): possibly a response the service "
    "could not take; reconnecting"
)
INTERNAL_WHILE_PENDING = (
    "internal error on the service while a tool call was pending: reconnecting and resuming"
)


# A closure later than this after a tool response, or after the model answered it, is not
# taken for the service's reaction to that response.
RIGHT_AFTER_RESPONSE_S = 1.0


def _last_was_tool_response(ctx: CloseContext) -> bool:
    """The closure came right after a tool response, with nothing from the model since."""
    if not ctx.last_sent or ctx.last_sent[-1].kind != "toolResponse":
        return False
    sent_at = ctx.last_sent[-1].at
    replied = ctx.last_reply_at is not None and ctx.last_reply_at >= sent_at
    return not replied and ctx.at - sent_at <= RIGHT_AFTER_RESPONSE_S


def _policy_violation(reason: str, ctx: CloseContext) -> tuple[str, Action]:
    if reason == REASON_NOT_SUPPORTED:
        if ctx.input_sent_while_pending or ctx.pending:
            return GATING_BUG, Action.RESUME
        return "the service refused an operation the model does not support", Action.RESUME
    if reason == REASON_NOT_FOUND:
        if _last_was_tool_response(ctx):
            return ID_MISMATCH, Action.RESUME
        return "the service could not find an entity the client named", Action.RESUME
    if reason.startswith(REASON_SESSION_NOT_FOUND):
        return STALE_HANDLE, Action.FRESH
    if "unregistered callers" in reason:
        return NO_KEY, Action.FATAL
    return "the service closed the session for a policy violation", Action.RESUME


def _invalid(reason: str) -> tuple[str, Action]:
    lowered = reason.lower()
    if "session handle" in lowered:
        return STALE_HANDLE, Action.FRESH
    if "api key" in lowered:
        return BAD_KEY, Action.FATAL
    if "activity" in lowered:
        return ACTIVITY_MISMATCH, Action.FATAL
    return INVALID, Action.FATAL


def _internal(reason: str, ctx: CloseContext) -> tuple[str, Action]:
    if reason.startswith("Deadline expired"):
        if ctx.go_away_seen:
            return DEADLINE_AFTER_GO_AWAY, Action.RESUME
        return "server deadline: the connection reached its time limit, reconnecting", (
            Action.RESUME
        )
    if "keepalive" in reason:
        return KEEPALIVE, Action.RESUME
    if _last_was_tool_response(ctx):
        return INTERNAL_AFTER_RESPONSE.format(size=ctx.last_tool_response_size), Action.RESUME
    if ctx.pending:
        return INTERNAL_WHILE_PENDING, Action.RESUME
    return "transient internal error on the service: reconnecting", Action.RESUME


def _client_close(code: int | None, reason: str) -> str:
    if "keepalive" in reason:
        return KEEPALIVE
    what = CLIENT_CLOSES.get(code or 0, "this device's WebSocket ended the connection")
    return f"{what}: closed by this device ({code} {reason or 'no reason'}), reconnecting"


def likely_cause(code: int | None, reason: str, ctx: CloseContext) -> tuple[str, Action]:
    """The plain-language cause of a closure and what to do about it."""
    if ctx.local_cause in LOCAL_CAUSES:
        return LOCAL_CAUSES[ctx.local_cause]
    if ctx.local_cause == "client-close":
        return _client_close(code, reason), Action.RESUME
    if code == 1008:
        return _policy_violation(reason, ctx)
    if code == 1007:
        return _invalid(reason)
    if code == 1011:
        return _internal(reason, ctx)
    if code == 1006:
        return (
            "connection dropped without a close frame: network down or service unreachable",
            Action.RESUME,
        )
    if code in (1000, 1001):
        return "the service ended the connection", Action.RESUME
    return "an unexpected closure: reconnecting", Action.RESUME
