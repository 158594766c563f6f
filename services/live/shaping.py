"""Tool responses made safe to send: JSON only, tidy text, a size cap with a visible marker.

The public reports show the service closing the session (1011, 1008) on responses it dislikes
without saying why; shaping them here, and checking them before they leave, turns those
mysteries into a clear local message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_SPACE = re.compile(r"\s+")
TRUNCATION_MARKER = "…[truncated: {kept} of {total} characters]"


@dataclass(frozen=True)
class Shaped:
    """A response payload ready to send, with its encoded size and what shaping did."""

    payload: dict[str, Any]
    size: int
    truncated: bool
    note: str | None = None


def _tidy(value: Any) -> Any:
    if isinstance(value, str):
        return _SPACE.sub(" ", value).strip()
    if isinstance(value, dict):
        return {str(k): _tidy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tidy(v) for v in value]
    return value


def _encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def shape_response(payload: dict[str, Any], cap_chars: int) -> Shaped:
    """Normalise whitespace, insist on JSON, and cap the encoded size at ``cap_chars``."""
    tidy = _tidy(payload)
    try:
        text = _encode(tidy)
    except (TypeError, ValueError) as exc:
        error = {"error": f"the tool returned a value that is not JSON ({exc})"}
        return Shaped(error, len(_encode(error)), truncated=False, note="not JSON")
    if len(text) <= cap_chars:
        return Shaped(tidy, len(text), truncated=False)
    key = "error" if "error" in tidy else "output"
    flat = tidy[key] if isinstance(tidy.get(key), str) else text
    budget = max(0, cap_chars - 120)
    marker = TRUNCATION_MARKER.format(kept=budget, total=len(flat))
    capped = {key: flat[:budget] + marker, "truncated": True}
    return Shaped(capped, len(_encode(capped)), truncated=True, note=f"{len(text)} > {cap_chars}")
