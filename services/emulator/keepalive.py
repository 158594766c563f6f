"""Slow pongs: the stand-in can answer the client's keepalive pings late, as the service does.

Source: python-genai #2935 (reported by users, observed): the service may take 8 to 30 s to answer
a ping, against websockets' 20 s default ``ping_timeout``, and the client then closes with
"1011 keepalive ping timeout". websockets answers pings inside its sans-I/O protocol, so
holding them back means taking over that one branch: the protocol hands the ping on as an
event instead of answering it, and the connection answers it after the delay.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State
from websockets.server import ServerProtocol


class _HeldPings(ServerProtocol):
    """A server protocol that leaves pings unanswered for its connection to answer."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            self.events.append(frame)
            return
        super().recv_frame(frame)


def slow_pong_connection(delay_s: float) -> type[ServerConnection]:
    """A connection class for ``websockets.serve`` that answers each ping ``delay_s`` late."""

    class SlowPongConnection(ServerConnection):
        def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
            # Same layout, one method different: the protocol was built by websockets.serve.
            protocol.__class__ = _HeldPings
            super().__init__(protocol, *args, **kwargs)

        def process_event(self, event: Event) -> None:
            if isinstance(event, Frame) and event.opcode is Opcode.PING:
                self.loop.call_later(delay_s, self._late_pong, bytes(event.data))
                return
            super().process_event(event)

        def _late_pong(self, data: bytes) -> None:
            if self.protocol.state is State.OPEN:
                self.protocol.send_pong(data)
                self.send_data()

    return SlowPongConnection
