"""Client frame parsing and server frame building for the Live stand-in.

The SDK writes snake_case wrappers (``realtime_input``) around camelCase content
(``activityStart``), and other clients write pure camelCase; both are folded into camelCase
here. Payloads the model defined (function ``args``, tool ``response`` bodies) keep their keys.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

# Keys whose values belong to the application, not the protocol: never rewrite inside them.
_OPAQUE_KEYS = frozenset({"response", "args", "parameters", "parametersJsonSchema", "schema"})

REALTIME_KINDS = frozenset(
    {"audio", "activityStart", "activityEnd", "audioStreamEnd", "text", "video", "mediaChunks"}
)


class FrameError(ValueError):
    """A client frame that is not valid JSON or not a known message."""


def to_camel(key: str) -> str:
    """Return ``key`` in lowerCamelCase (``realtime_input`` → ``realtimeInput``)."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def normalise_keys(value: Any) -> Any:
    """Rewrite every protocol key of a decoded JSON value to camelCase."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            camel = to_camel(key)
            out[camel] = item if camel in _OPAQUE_KEYS else normalise_keys(item)
        return out
    if isinstance(value, list):
        return [normalise_keys(item) for item in value]
    return value


@dataclass(frozen=True)
class ClientFrame:
    """One decoded client message.

    ``kind`` is ``setup``, ``toolResponse``, ``clientContent`` or, for realtime input, the
    realtime field that was set (``audio``, ``activityStart``, ...). ``size`` is the
    frame's length on the wire; ``audio_bytes`` the decoded PCM length for audio frames.
    """

    kind: str
    body: dict[str, Any]
    size: int
    audio: bytes = field(default=b"", repr=False)

    @property
    def is_realtime(self) -> bool:
        """True for every kind of realtime input (the kinds gated while a call is pending)."""
        return self.kind in REALTIME_KINDS


def decode_audio(data: str) -> bytes:
    """Decode base64 audio in either alphabet (the SDK uses the URL-safe one)."""
    padded = data + "=" * (-len(data) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as exc:
        raise FrameError(f"audio data is not base64: {exc}") from exc


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Decode one client frame; raises :class:`FrameError` when it is not a known message."""
    size = len(raw)
    try:
        decoded = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from exc
    if not isinstance(decoded, dict) or len(decoded) != 1:
        raise FrameError("a client frame holds exactly one message")
    message = normalise_keys(decoded)
    ((name, body),) = message.items()
    if not isinstance(body, dict):
        raise FrameError(f"{name} must be an object")
    if name in ("setup", "toolResponse", "clientContent"):
        return ClientFrame(kind=name, body=body, size=size)
    if name != "realtimeInput":
        raise FrameError(f"unknown client message {name!r}")
    fields = [key for key in body if key in REALTIME_KINDS]
    if len(fields) != 1:
        raise FrameError(f"realtimeInput must set exactly one field, got {sorted(body)}")
    kind = fields[0]
    audio = b""
    if kind == "audio":
        blob = body["audio"]
        if not isinstance(blob, dict) or not isinstance(blob.get("data"), str):
            raise FrameError("realtimeInput.audio needs data")
        audio = decode_audio(blob["data"])
    return ClientFrame(kind=kind, body=body, size=size, audio=audio)


def encode(message: dict[str, Any]) -> str:
    """Serialise a server message as compact JSON text."""
    return json.dumps(message, separators=(",", ":"))


def setup_complete() -> dict[str, Any]:
    """The answer to ``setup``."""
    return {"setupComplete": {}}


def tool_call(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``toolCall`` carrying one or several function calls (each with id, name, args)."""
    return {"toolCall": {"functionCalls": calls}}


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    """Tell the client that these calls need no response any more."""
    return {"toolCallCancellation": {"ids": ids}}


def audio_chunk(pcm: bytes, rate: int = 24000) -> dict[str, Any]:
    """A piece of the model's spoken reply."""
    part = {
        "inlineData": {
            "mimeType": f"audio/pcm;rate={rate}",
            "data": base64.b64encode(pcm).decode("ascii"),
        }
    }
    return {"serverContent": {"modelTurn": {"parts": [part]}}}


def output_transcription(text: str) -> dict[str, Any]:
    """Transcription of what the model is saying."""
    return {"serverContent": {"outputTranscription": {"text": text}}}


def input_transcription(text: str) -> dict[str, Any]:
    """Transcription of what the user said."""
    return {"serverContent": {"inputTranscription": {"text": text}}}


def interrupted() -> dict[str, Any]:
    """The user's speech cut the model off."""
    return {"serverContent": {"interrupted": True}}


def generation_complete() -> dict[str, Any]:
    """The model has finished generating (playback may still be going)."""
    return {"serverContent": {"generationComplete": True}}


def turn_complete(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's turn is over, with what the turn cost in tokens (``usageMetadata``)."""
    message: dict[str, Any] = {"serverContent": {"turnComplete": True}}
    if usage is not None:
        message["usageMetadata"] = usage
    return message


def usage_metadata(prompt: dict[str, int], response: dict[str, int]) -> dict[str, Any]:
    """``usageMetadata`` from token counts per modality (``AUDIO``, ``TEXT``) of each side."""

    def details(counts: dict[str, int]) -> list[dict[str, Any]]:
        return [{"modality": m, "tokenCount": n} for m, n in sorted(counts.items()) if n]

    prompt_total, response_total = sum(prompt.values()), sum(response.values())
    return {
        "promptTokenCount": prompt_total,
        "responseTokenCount": response_total,
        "totalTokenCount": prompt_total + response_total,
        "promptTokensDetails": details(prompt),
        "responseTokensDetails": details(response),
    }


def go_away(time_left_s: float, verbatim: str | None = None) -> dict[str, Any]:
    """Warn that the server will end the connection in ``time_left_s`` seconds (or send
    ``verbatim`` as the time left, well-formed or not)."""
    return {"goAway": {"timeLeft": f"{time_left_s:g}s" if verbatim is None else verbatim}}


def resumption_update(handle: str | None, resumable: bool) -> dict[str, Any]:
    """A new resumption handle (or none, while the session is not resumable)."""
    body: dict[str, Any] = {"resumable": resumable}
    if handle is not None:
        body["newHandle"] = handle
    return {"sessionResumptionUpdate": body}


def server_kind(message: dict[str, Any]) -> str:
    """A short name for a server message, used in the trace."""
    name, body = next(iter(message.items()))
    name = str(name)
    if name == "serverContent" and isinstance(body, dict):
        if "modelTurn" in body:
            return "serverContent.audio"
        return "serverContent." + str(next(iter(body)))
    return name
