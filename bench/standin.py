"""The stand-in as the benchmarks use it: one per scenario, on its own thread, and clients of it."""

from __future__ import annotations

import contextlib
import itertools
import ssl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from google import genai
from google.genai import types

from services.emulator.background import background_emulator
from services.emulator.scenario import Scenario, scenario_from_dict
from services.emulator.server import Emulator, EmulatorSettings
from services.emulator.trace import TraceRecord

API_KEY = "bench-key"
_numbers = itertools.count(1)


@contextlib.asynccontextmanager
async def standin(
    scenario: Scenario | dict[str, Any], workdir: Path, *, pace: float = 0.0, **settings: Any
) -> AsyncIterator[Emulator]:
    """Serve ``scenario`` on a free loopback port from a thread of its own for the block.

    Its frame timing (the grace window after a ``toolCall``) is judged on its own event loop,
    apart from the client's, as the real service is. The trace is kept in memory only."""
    if isinstance(scenario, dict):
        scenario = scenario_from_dict(scenario)
    cert = workdir / f"stand-in-{next(_numbers)}.pem"
    em_settings = EmulatorSettings(
        scenario=scenario, cert_out=cert, api_key=API_KEY, pace=pace, **settings
    )
    try:
        async with background_emulator(em_settings) as em:
            yield em
    finally:
        cert.unlink(missing_ok=True)


def sdk_client(em: Emulator) -> genai.Client:
    """A google-genai client pointed at ``em``, trusting only its certificate."""
    context = ssl.create_default_context(cafile=str(em.settings.cert_out))
    return genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=em.base_url, api_version="v1beta", async_client_args={"ssl": context}
        ),
    )


def plain_config(functions: Iterable[str] = ()) -> types.LiveConnectConfig:
    """The connect config of the getting-started example: audio out, automatic detection, and
    the ``functions`` it declares (the stand-in's model calls no others)."""
    declared = [types.FunctionDeclaration(name=name, description=name) for name in functions]
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        tools=[types.Tool(function_declarations=declared)] if declared else None,
    )


def turns_answered(em: Emulator) -> int:
    """Model turns completed so far, over every conversation ``em`` has held."""
    # list() copies the view in one step, while the stand-in's thread may add to it.
    return sum(conv.turn_index for conv in list(em.conversations.values()))


def server_closures(records: list[TraceRecord]) -> list[int]:
    """Codes of the connections the stand-in closed, in order."""
    return [int(r["code"]) for r in records if r["event"] == "close" and r.get("by") == "server"]


def resume_times_ms(records: list[TraceRecord], code: int = 1011) -> list[float]:
    """For each closure with ``code`` by the stand-in, the time until the next connection had
    resumed the conversation (``setupComplete`` sent on a setup with a handle). Closures the
    next connection did not resume from (a stale handle, a fresh start) are left out."""
    out = []
    for close in records:
        if close["event"] != "close" or close.get("by") != "server" or close.get("code") != code:
            continue
        later = [r for r in records if r["t"] >= close["t"] and r.get("conn", 0) > close["conn"]]
        if not later:
            continue
        conn = min(r["conn"] for r in later)
        mine = [r for r in later if r["conn"] == conn]
        resumed = any(
            r["event"] == "in" and r.get("kind") == "setup" and r.get("resumed") for r in mine
        )
        ready = next(
            (r["t"] for r in mine if r["event"] == "out" and r.get("kind") == "setupComplete"), None
        )
        if resumed and ready is not None:
            out.append(1000 * (ready - close["t"]))
    return out
