"""The one boundary for server frames: raw bytes in, a checked and typed message out.

Sans-I/O: no sockets, no clock, no SDK. :func:`parse_server_frame` decodes one frame and
checks the type and shape of every field the daemon acts on; a frame that fails raises
:class:`ProtocolError` before any part of the daemon has seen any of it. The error carries the
frame's kind of fault, its size and a short escaped excerpt of its first bytes, with audio
data and resumption handles masked. Top-level fields the daemon does not use are tolerated
(the service adds new ones, e.g. ``voiceActivity``) and reported in ``unknown``.
:class:`FrameBudget` bounds a flood.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Far above any frame the service sends (audio chunks are a few KiB), far below memory trouble.
MAX_FRAME_BYTES = 512 * 1024
# Frames in any one second: the stand-in streaming a long reply flat out (--pace 0) sends about
# 1700 a second on a busy 2-core machine; the service paces its replies far below that.
MAX_FRAMES_PER_SECOND = 5000
EXCERPT_BYTES = 64
MAX_ID_CHARS = 256
MAX_HANDLE_CHARS = 4096
KNOWN_FIELDS = frozenset(
    {
        "setupComplete",
        "serverContent",
        "toolCall",
        "toolCallCancellation",
        "goAway",
        "sessionResumptionUpdate",
        "usageMetadata",
    }
)
log = logging.getLogger(__name__)
_DURATION = re.compile(r"(\d{1,9})(\.\d{1,9})?s")
# The time left assumed when a goAway's is missing or malformed: short enough that the
# connection is rotated well before a real deadline, long enough to wait for a safe point.
GO_AWAY_DEFAULT_S = 5.0
# Values never echoed in an excerpt: audio payloads and resumption handles.
_MASKED = re.compile(r'("(?:data|newHandle|handle)"\s*:\s*")[^"]*("?)')


class ProtocolError(ValueError):
    """A server frame the daemon will not act on.

    ``kind`` names the fault (``not-json``, ``wrong-type``, ``too-large``, ...), ``size`` is
    the frame's length in bytes and ``head`` a short escaped excerpt of its start; ``str()``
    is one line."""

    def __init__(self, kind: str, detail: str, size: int, head: str) -> None:
        super().__init__(f"{kind}: {detail} ({size} B, starts {head!r})")
        self.kind = kind
        self.detail = detail
        self.size = size
        self.head = head


@dataclass(frozen=True)
class FunctionCall:
    """One call of a ``toolCall``: a non-empty id and name, and an object of arguments."""

    id: str
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True)
class Content:
    """The parts of ``serverContent`` the daemon acts on."""

    audio: tuple[bytes, ...] = ()
    interrupted: bool = False
    turn_complete: bool = False
    input_text: str | None = None
    output_text: str | None = None


@dataclass(frozen=True)
class ResumptionUpdate:
    """A ``sessionResumptionUpdate``."""

    new_handle: str | None
    resumable: bool


@dataclass(frozen=True)
class ServerMessage:
    """One checked server frame. Absent parts are None (or empty)."""

    size: int
    setup_complete: bool = False
    content: Content | None = None
    tool_calls: tuple[FunctionCall, ...] | None = None
    cancelled_ids: tuple[str, ...] | None = None
    go_away_s: float | None = None
    resumption: ResumptionUpdate | None = None
    # The turn's token counts, as sent: the usage meter reads them defensively.
    usage: dict[str, Any] | None = None
    unknown: tuple[str, ...] = ()


def excerpt(raw: bytes | str, limit: int = EXCERPT_BYTES) -> str:
    """The first ``limit`` bytes of a frame as printable text, audio data and handles masked."""
    head = raw[: limit * 4] if isinstance(raw, str) else raw[: limit * 4].decode("utf-8", "replace")
    masked = _MASKED.sub(lambda m: m.group(1) + "…" + m.group(2), head)
    text = masked[:limit]
    return text.encode("unicode_escape").decode("ascii")


class _Frame:
    """Checks on one decoded frame; every failure names the field at fault."""

    def __init__(self, raw: bytes | str, size: int) -> None:
        self.raw = raw
        self.size = size

    def fail(self, kind: str, detail: str) -> ProtocolError:
        return ProtocolError(kind, detail, self.size, excerpt(self.raw))

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail("wrong-type", f"{where} must be an object, got {_json_type(value)}")
        return value

    def optional(self, body: dict[str, Any], key: str, kind: type, where: str) -> Any:
        value = body.get(key)
        if value is None:
            return None
        # JSON true is not a number, and a number is not true.
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise self.fail(
                "wrong-type", f"{where}.{key} must be {_WORDS[kind]}, got {_json_type(value)}"
            )
        return value

    def text(self, body: dict[str, Any], key: str, where: str, limit: int) -> str:
        value = self.optional(body, key, str, where)
        if not value:
            raise self.fail("missing-field", f"{where}.{key} must be a non-empty string")
        if len(value) > limit:
            raise self.fail("wrong-type", f"{where}.{key} is longer than {limit} characters")
        return str(value)


_WORDS = {bool: "true or false", str: "a string", list: "an array", dict: "an object"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def parse_server_frame(raw: bytes | str, max_bytes: int = MAX_FRAME_BYTES) -> ServerMessage:
    """Decode and check one server frame; raises :class:`ProtocolError` on any fault."""
    size = len(raw.encode("utf-8")) if isinstance(raw, str) else len(raw)
    frame = _Frame(raw, size)
    if size > max_bytes:
        raise frame.fail("too-large", f"frame over the {max_bytes} B limit")
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise frame.fail("not-utf8", f"not UTF-8 text at byte {exc.start}") from exc
    try:
        decoded = json.loads(text)
    except RecursionError as exc:
        raise frame.fail("not-json", "nested too deeply") from exc
    except ValueError as exc:
        raise frame.fail("not-json", f"not JSON: {exc}") from exc
    body = frame.obj(decoded, "the frame")
    if "error" in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise frame.fail("error-object", f"the service sent an error: {str(message)[:80]!r}")
    unknown = tuple(sorted(str(k)[:64] for k in body if k not in KNOWN_FIELDS))
    setup = body.get("setupComplete")
    if setup is not None:
        frame.obj(setup, "setupComplete")
    usage = body.get("usageMetadata")
    if usage is not None:
        usage = frame.obj(usage, "usageMetadata")
    return ServerMessage(
        size=size,
        setup_complete=setup is not None,
        content=_content(frame, body.get("serverContent")),
        tool_calls=_tool_call(frame, body.get("toolCall")),
        cancelled_ids=_cancellation(frame, body.get("toolCallCancellation")),
        go_away_s=_go_away(frame, body.get("goAway")),
        resumption=_resumption(frame, body.get("sessionResumptionUpdate")),
        usage=usage,
        unknown=unknown,
    )


def _content(frame: _Frame, value: Any) -> Content | None:
    if value is None:
        return None
    where = "serverContent"
    body = frame.obj(value, where)
    audio: list[bytes] = []
    turn = body.get("modelTurn")
    if turn is not None:
        parts = frame.optional(frame.obj(turn, f"{where}.modelTurn"), "parts", list, where)
        for i, item in enumerate(parts or []):
            audio.extend(_part(frame, item, f"{where}.modelTurn.parts[{i}]"))
    for flag in ("interrupted", "turnComplete", "generationComplete", "waitingForInput"):
        frame.optional(body, flag, bool, where)
    texts: dict[str, str | None] = {}
    for key in ("inputTranscription", "outputTranscription"):
        transcription = body.get(key)
        texts[key] = None
        if transcription is not None:
            texts[key] = frame.optional(
                frame.obj(transcription, f"{where}.{key}"), "text", str, f"{where}.{key}"
            )
    return Content(
        audio=tuple(audio),
        interrupted=bool(body.get("interrupted")),
        turn_complete=bool(body.get("turnComplete")),
        input_text=texts["inputTranscription"],
        output_text=texts["outputTranscription"],
    )


def _part(frame: _Frame, value: Any, where: str) -> list[bytes]:
    part = frame.obj(value, where)
    frame.optional(part, "text", str, where)
    inline = part.get("inlineData")
    if inline is None:
        return []
    blob = frame.obj(inline, f"{where}.inlineData")
    mime = frame.optional(blob, "mimeType", str, f"{where}.inlineData") or ""
    data = frame.optional(blob, "data", str, f"{where}.inlineData")
    if not data:
        return []
    try:
        pcm = base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise frame.fail("bad-audio", f"{where}.inlineData.data is not base64") from exc
    if mime and not mime.startswith("audio/"):
        return []
    # The daemon plays what it takes as 16-bit samples: half a sample is a broken frame.
    if len(pcm) % 2:
        raise frame.fail("bad-audio", f"{where}.inlineData.data has an odd length ({len(pcm)} B)")
    return [pcm]


def _tool_call(frame: _Frame, value: Any) -> tuple[FunctionCall, ...] | None:
    if value is None:
        return None
    where = "toolCall"
    body = frame.obj(value, where)
    calls = frame.optional(body, "functionCalls", list, where) or []
    out: list[FunctionCall] = []
    seen: set[str] = set()
    for i, item in enumerate(calls):
        at = f"{where}.functionCalls[{i}]"
        call = frame.obj(item, at)
        call_id = frame.text(call, "id", at, MAX_ID_CHARS)
        name = frame.text(call, "name", at, MAX_ID_CHARS)
        args = call.get("args")
        if args is not None:
            frame.obj(args, f"{at}.args")
        if call_id in seen:
            raise frame.fail("duplicate-id", f"{at}.id repeats an id of the same toolCall")
        seen.add(call_id)
        out.append(FunctionCall(call_id, name, args or {}))
    return tuple(out)


def _cancellation(frame: _Frame, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    where = "toolCallCancellation"
    ids = frame.optional(frame.obj(value, where), "ids", list, where) or []
    for i, item in enumerate(ids):
        if not isinstance(item, str) or not item or len(item) > MAX_ID_CHARS:
            raise frame.fail("wrong-type", f"{where}.ids[{i}] must be a non-empty string")
    return tuple(ids)


def _go_away(frame: _Frame, value: Any) -> float | None:
    if value is None:
        return None
    where = "goAway"
    left = frame.optional(frame.obj(value, where), "timeLeft", str, where)
    if left is None or _DURATION.fullmatch(left) is None:
        # Advice, not a command: a missing or malformed time left ("-5s", "soon") is taken
        # as a default, so that it neither rotates at once nor waits for ever.
        shown = repr(left[:40]) if left else "none"
        log.warning(
            "goAway with a malformed timeLeft (%s): assuming %.0f s", shown, GO_AWAY_DEFAULT_S
        )
        return GO_AWAY_DEFAULT_S
    return float(left[:-1])


def _resumption(frame: _Frame, value: Any) -> ResumptionUpdate | None:
    if value is None:
        return None
    where = "sessionResumptionUpdate"
    body = frame.obj(value, where)
    handle = frame.optional(body, "newHandle", str, where)
    if handle is not None and len(handle) > MAX_HANDLE_CHARS:
        raise frame.fail("wrong-type", f"{where}.newHandle is longer than {MAX_HANDLE_CHARS}")
    resumable = frame.optional(body, "resumable", bool, where)
    return ResumptionUpdate(new_handle=handle or None, resumable=bool(resumable))


@dataclass
class FrameBudget:
    """At most ``per_second`` frames in any one-second window (a flood is a protocol fault)."""

    per_second: int = MAX_FRAMES_PER_SECOND
    _times: deque[float] = field(default_factory=deque)

    def admit(self, now: float) -> bool:
        """Count a frame received at ``now`` (seconds); False once the budget is spent."""
        times = self._times
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) >= self.per_second:
            return False
        times.append(now)
        return True
