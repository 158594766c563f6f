"""The protocol rules the real service enforces, as a pure state object.

No sockets and no clock: callers pass ``now`` (monotonic seconds). Each check returns the
:class:`Violation` the real service would close the connection for, or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Close reasons exactly as the real service words them (see shared docs: live-protocol.md).
REASON_NOT_SUPPORTED = "Operation is not implemented, or supported, or enabled."
REASON_NOT_FOUND = "Requested entity was not found."
REASON_SESSION_NOT_FOUND = "BidiGenerateContent session not found"
REASON_EXPLICIT_ACTIVITY = (
    "Explicit activity control is not supported when automatic activity detection is enabled."
)
REASON_INVALID_ARGUMENT = "Request contains an invalid argument."
REASON_BAD_KEY = "API key not valid. Please pass a valid API key."
# A close reason holds at most 123 bytes (RFC 6455): the service's message is cut there.
REASON_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)[:123]
REASON_INVALID_HANDLE = "Invalid session handle"
REASON_MEDIA_CHUNKS = (
    "realtime_input.media_chunks is deprecated. Use audio, video, or text instead."
)
REASON_INTERNAL = "Internal error occurred."
REASON_DEADLINE = "Deadline expired before operation could complete."

CODE_INVALID = 1007
CODE_POLICY = 1008
CODE_INTERNAL = 1011


@dataclass(frozen=True)
class Violation:
    """A broken rule. ``fatal`` ones close the connection with ``code`` and ``reason``."""

    rule: str
    code: int
    reason: str
    detail: str
    fatal: bool = True


@dataclass
class PendingCall:
    """A tool call the server sent and the client has not answered yet."""

    call_id: str
    name: str
    sent_at: float
    # A non-blocking call is answered like any other but does not hold realtime input back.
    blocking: bool = True


@dataclass
class ProtocolState:
    """What the server knows about one connection, for judging each client frame."""

    manual_activity: bool = False
    grace_s: float = 0.1
    pending: dict[str, PendingCall] = field(default_factory=dict)
    activity_open: bool = False
    # When the newest toolCall left the server: input arriving within grace_s of it was
    # already in flight when the client could have seen the call.
    last_tool_call_at: float | None = None

    def tool_call_sent(
        self, calls: list[tuple[str, str]], now: float, non_blocking: frozenset[str] = frozenset()
    ) -> None:
        """Record a ``toolCall`` the server sent: ``calls`` is a list of (id, name);
        ``non_blocking`` the ids among them that do not hold realtime input back."""
        for call_id, name in calls:
            self.pending[call_id] = PendingCall(call_id, name, now, call_id not in non_blocking)
        if any(call_id not in non_blocking for call_id, _ in calls):
            self.last_tool_call_at = now

    @property
    def blocking(self) -> list[PendingCall]:
        """The pending calls during which realtime input is refused."""
        return [c for c in self.pending.values() if c.blocking]

    def cancel(self, ids: list[str]) -> None:
        """The server cancelled these calls; they need no response any more."""
        for call_id in ids:
            self.pending.pop(call_id, None)

    def in_grace(self, now: float) -> bool:
        """True while input may still be frames that were in flight when the call left."""
        return self.last_tool_call_at is not None and now - self.last_tool_call_at <= self.grace_s

    def check_realtime(self, kind: str, now: float) -> Violation | None:
        """Judge a realtime input frame of ``kind`` and update the activity state."""
        if kind in ("activityStart", "activityEnd") and not self.manual_activity:
            return Violation(
                "activity-without-manual-mode",
                CODE_INVALID,
                REASON_EXPLICIT_ACTIVITY,
                f"{kind} sent while automatic activity detection is enabled",
            )
        if kind == "audioStreamEnd" and self.manual_activity:
            return Violation(
                "audio-stream-end-in-manual-mode",
                CODE_INVALID,
                REASON_INVALID_ARGUMENT,
                "audioStreamEnd belongs to automatic activity detection",
            )
        blocking = self.blocking
        if blocking and not self.in_grace(now):
            names = ", ".join(f"{c.name} ({c.call_id})" for c in blocking)
            oldest = min(c.sent_at for c in blocking)
            return Violation(
                "realtime-input-while-tool-call-pending",
                CODE_POLICY,
                REASON_NOT_SUPPORTED,
                f"{kind} arrived {1000 * (now - oldest):.0f} ms after the toolCall for {names}",
            )
        return self._track_activity(kind)

    def _track_activity(self, kind: str) -> Violation | None:
        if kind == "activityStart":
            if self.activity_open:
                return Violation(
                    "activity-start-while-open",
                    0,
                    "",
                    "activityStart while the previous activity was never ended",
                    fatal=False,
                )
            self.activity_open = True
        elif kind == "activityEnd":
            if not self.activity_open:
                return Violation(
                    "activity-end-without-start",
                    0,
                    "",
                    "activityEnd without a matching activityStart",
                    fatal=False,
                )
            self.activity_open = False
        return None

    def check_tool_response(self, responses: list[dict[str, object]]) -> Violation | None:
        """Judge a ``toolResponse`` and remove the calls it answers from ``pending``."""
        if not responses:
            return Violation(
                "empty-tool-response",
                CODE_INVALID,
                REASON_INVALID_ARGUMENT,
                "toolResponse without functionResponses",
            )
        for response in responses:
            call_id = response.get("id")
            name = response.get("name")
            if not isinstance(name, str) or not name:
                return Violation(
                    "tool-response-without-name",
                    CODE_POLICY,
                    REASON_NOT_FOUND,
                    f"functionResponse for id {call_id!r} has no name",
                )
            if not isinstance(call_id, str) or call_id not in self.pending:
                return Violation(
                    "tool-response-unknown-id",
                    CODE_POLICY,
                    REASON_NOT_FOUND,
                    f"no pending call with id {call_id!r} (name {name!r})",
                )
            if self.pending[call_id].name != name:
                return Violation(
                    "tool-response-name-mismatch",
                    CODE_POLICY,
                    REASON_NOT_FOUND,
                    f"id {call_id!r} belongs to {self.pending[call_id].name!r}, not {name!r}",
                )
        for response in responses:
            self.pending.pop(str(response["id"]), None)
        return None
