"""Malformed server frames the stand-in sends in its hostile mode (a ``hostile`` fault).

Each kind is one frame a buggy proxy or service release could send; ``flood`` and
``too-large`` test the client's bounds. A scenario names a kind (``"frame": "json-array"``)
or gives a literal frame (``"text": "..."``).
"""

from __future__ import annotations

import base64
import json

# Harmless on its own; sent in bulk by the flood.
FLOOD_FRAME = '{"usageMetadata":{}}'
FLOOD_COUNT = 10_000
TOO_LARGE_BYTES = 768 * 1024


def _text(message: object) -> str:
    return json.dumps(message, separators=(",", ":"))


def _audio(data: str) -> str:
    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
    return _text({"serverContent": {"modelTurn": {"parts": [part]}}})


HOSTILE_FRAMES: dict[str, str | bytes] = {
    "invalid-json": '{"serverContent": {"turnComplete": tru',
    "binary-not-json": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
    "json-array": '[{"setupComplete": {}}]',
    "json-scalar": "42",
    "error-object": _text({"error": {"code": 500, "message": "backend", "status": "INTERNAL"}}),
    "unknown-field": _text({"somethingNew": {"detail": 1}}),
    "content-wrong-type": _text({"serverContent": "done"}),
    "turn-complete-wrong-type": _text({"serverContent": {"turnComplete": "yes"}}),
    "tool-call-wrong-types": _text({"toolCall": {"functionCalls": [{"id": 7, "name": ["x"]}]}}),
    "tool-call-args-not-object": _text(
        {"toolCall": {"functionCalls": [{"id": "call-1", "name": "set_output", "args": [1]}]}}
    ),
    "cancellation-wrong-type": _text({"toolCallCancellation": {"ids": "function-call-1"}}),
    "resumption-wrong-type": _text({"sessionResumptionUpdate": {"newHandle": 5}}),
    "go-away-wrong-type": _text({"goAway": {"timeLeft": 50}}),
    "audio-bad-base64": _audio("not base64!"),
    "audio-odd-length": _audio(base64.b64encode(b"\x01\x02\x03").decode("ascii")),
    "too-large": _text({"usageMetadata": {"pad": "x" * TOO_LARGE_BYTES}}),
}
# The kinds the client must treat as a protocol error (the others it may tolerate).
TOLERATED = frozenset({"unknown-field"})
KINDS = (*HOSTILE_FRAMES, "flood")
