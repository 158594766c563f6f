"""The input gate: no realtime input may leave while a blocking tool call is pending.

Pure logic, no sockets and no clock. The session shuts the gate synchronously when a
``toolCall`` arrives (before any ``await``), asks it before every realtime send, and resolves
calls as their responses go out or they are cancelled. The gate also keeps activity
signalling honest: it tracks what the user wants (speaking or not) apart from what the
service has seen, so that after the gate opens it sends exactly the one signal that brings
the two together — never an ``activityEnd`` without its ``activityStart``, never a stale one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum


class Signal(StrEnum):
    """Activity signals of manual turn taking."""

    START = "activityStart"
    END = "activityEnd"


class InputGate:
    """Pending tool calls, the shut/open state derived from them, and activity bookkeeping."""

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}
        # Non-blocking calls: answered like the others, but they never shut the gate.
        self.running: dict[str, str] = {}
        self.dropped: Counter[str] = Counter()
        # The user's intent (from VAD or the button) and what this connection has been sent.
        self.want_activity = False
        self.wire_activity = False

    @property
    def shut(self) -> bool:
        """True while any call is pending."""
        return bool(self.pending)

    def shut_for(self, calls: Iterable[tuple[str, str]]) -> None:
        """A ``toolCall`` arrived: remember each (id, name); the gate is shut from now on."""
        for call_id, name in calls:
            self.pending[call_id] = name

    def run_for(self, calls: Iterable[tuple[str, str]]) -> None:
        """Non-blocking calls arrived: remember each (id, name); the gate stays as it is."""
        for call_id, name in calls:
            self.running[call_id] = name

    def name_of(self, call_id: str) -> str | None:
        """The name of an unanswered call, or None if it is not awaited (answered, cancelled)."""
        return self.pending.get(call_id) or self.running.get(call_id)

    def resolve(self, ids: Iterable[str]) -> bool:
        """These calls were answered or cancelled. True if this opened the gate."""
        was_shut = self.shut
        for call_id in ids:
            self.pending.pop(call_id, None)
            self.running.pop(call_id, None)
        return was_shut and not self.shut

    def admit(self, kind: str) -> bool:
        """May a realtime frame of ``kind`` be sent now? Refusals are counted."""
        if self.shut:
            self.dropped[kind] += 1
            return False
        return True

    def request_activity(self, active: bool) -> Signal | None:
        """The user started (or stopped) speaking: the signal to send now, if any."""
        self.want_activity = active
        if self.shut:
            self.dropped[Signal.START if active else Signal.END] += 1
            return None
        return self.resync()

    def resync(self) -> Signal | None:
        """The one signal that makes the service's view match the user's, if they differ.

        The caller must send it at once (before its next ``await``), as the gate assumes it
        left."""
        if self.shut or self.want_activity == self.wire_activity:
            return None
        self.wire_activity = self.want_activity
        return Signal.START if self.want_activity else Signal.END

    def new_connection(self) -> None:
        """A new connection: nothing is pending and the service has seen no activity."""
        self.pending.clear()
        self.running.clear()
        self.wire_activity = False
