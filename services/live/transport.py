"""The one room allowed to reach inside the SDK and websockets.

The session reads the service's frames raw from the SDK's websocket, so that a malformed one
meets this project's boundary (:mod:`services.live.inbound`) and not the SDK's parser, and it
must know whether a server frame has already arrived but is still unread before it sends
realtime input: a ``toolCall`` sitting in our own buffer means the service already
considers the call pending, and one more frame would earn a 1008. Neither google-genai nor
websockets offers either as an API, so :func:`connection_of` and :func:`unread_frames` read
two private attributes:

- ``AsyncSession._ws`` (google-genai): the websockets ``ClientConnection`` of the session;
- ``ClientConnection.recv_messages.frames`` (websockets' ``Assembler``): frames received
  from the socket that no ``recv()`` has taken yet.

Either may move in an upgrade. :func:`check_seam` proves both on real objects, a websockets
connection over a socket pair and an SDK session around it, without any network; the daemon
runs it at start and ``check-config`` runs it too, so a broken seam is said loudly instead
of failing every connection or quietly weakening the 1008 protection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any, cast

from google.genai.live import AsyncSession
from websockets.asyncio.connection import Connection
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

# An unmasked text frame "{}" as a server sends it (FIN + text opcode, length 2).
_SERVER_FRAME = b"\x81\x02{}"
_CHECK_TURNS = 200


class SeamBroken(Exception):
    """The private attributes :func:`unread_frames` reads are gone; ``str()`` says which."""


def connection_of(session: AsyncSession) -> Connection:
    """The websockets connection of ``session``, or raise SeamBroken.

    The receive loop reads raw frames from it, so that the SDK's parser never meets a
    malformed one (:mod:`services.live.inbound` checks them instead)."""
    connection = getattr(session, "_ws", None)  # private: google-genai's AsyncSession
    if not isinstance(connection, Connection):
        raise SeamBroken("google-genai's AsyncSession no longer keeps its websocket in _ws")
    return connection


def _queue(session: AsyncSession) -> Any:
    """The websockets queue of received frames behind ``session``, or raise SeamBroken."""
    connection = connection_of(session)
    assembler = getattr(connection, "recv_messages", None)  # private: websockets' Connection
    frames = getattr(assembler, "frames", None)  # private: websockets' Assembler
    if frames is None or not hasattr(frames, "__len__"):
        raise SeamBroken(
            "websockets' connection no longer keeps received frames in recv_messages.frames"
        )
    return frames


def unread_frames(session: AsyncSession) -> bool:
    """True when a server frame has arrived but the receive loop has not read it yet.

    False when the seam is broken (``check_seam`` has said so at start): the gate still
    shuts on every ``toolCall``; only frames already in flight are no longer caught."""
    try:
        return len(_queue(session)) > 0
    except SeamBroken:
        return False


async def check_seam() -> str | None:
    """None when :func:`unread_frames` sees a frame that arrived; else what is broken."""
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    # Opened without a handshake, as the base class of the SDK's ClientConnection (which
    # would wait for one): the handshake is not what is checked, the frame queue is.
    protocol = ClientProtocol(parse_uri("wss://127.0.0.1/"), state=State.OPEN)
    connection = Connection(protocol)
    transport = None
    try:
        transport, _ = await loop.create_connection(lambda: connection, sock=ours)
        session = AsyncSession(api_client=cast(Any, None), websocket=cast(Any, connection))
        try:
            if len(_queue(session)) != 0:
                return "the received-frames queue is not empty before any frame arrived"
            peer.sendall(_SERVER_FRAME)
            for _ in range(_CHECK_TURNS):
                if len(_queue(session)) > 0:
                    return None
                await asyncio.sleep(0.005)
        except SeamBroken as exc:
            return str(exc)
        return "a frame that arrived was not seen in recv_messages.frames"
    finally:
        if transport is not None:
            transport.abort()
        with contextlib.suppress(OSError):
            ours.close()
        peer.close()


SEAM_ADVICE = (
    "frames already in flight when a toolCall arrives are no longer caught before a send; "
    "pin google-genai and websockets to the versions in requirements.lock"
)
