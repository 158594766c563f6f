"""``pi-live-voice emulator``: serve the stand-in until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from services.emulator.scenario import ScenarioError, default_scenario, load_scenario
from services.emulator.server import (
    REPLAY_ID_MODES,
    RESUMPTION_MODES,
    Emulator,
    EmulatorSettings,
)

log = logging.getLogger(__name__)

KEY_VARIABLE = "PLV_EMULATOR_API_KEY"
DEFAULT_KEY = "emulator-key"


class ApiKeyError(ValueError):
    """The stand-in's API key cannot be had; the message says why."""


def api_key(key_file: Path | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The key clients must send, and where it came from (for the start line; never the
    key): ``key_file``, else ``$PLV_EMULATOR_API_KEY``, else the documented default."""
    if key_file is not None:
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ApiKeyError(f"{key_file}: cannot read the API key: {reason}") from exc
        if not key:
            raise ApiKeyError(f"{key_file}: the API key file is empty")
        return key, f"from {key_file}"
    if environ.get(KEY_VARIABLE):
        return environ[KEY_VARIABLE].strip(), f"from ${KEY_VARIABLE}"
    return DEFAULT_KEY, "the default (README)"


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the emulator's options on ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    parser.add_argument(
        "--cert-out",
        type=Path,
        default=Path("emulator-cert.pem"),
        help="where to write the self-signed certificate clients must trust",
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        help=f"file holding the x-goog-api-key clients must send (else ${KEY_VARIABLE}, "
        f"else {DEFAULT_KEY!r})",
    )
    # A key on the command line shows in ps and /proc/PID/cmdline: refused with a pointer.
    parser.add_argument("--api-key", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scenario", type=Path, default=None, help="scenario JSON file (default: built-in)"
    )
    parser.add_argument("--trace", type=Path, default=None, help="JSONL trace file to append to")
    parser.add_argument(
        "--pace", type=float, default=1.0, help="reply timing: 1 real time, 0 as fast as possible"
    )
    parser.add_argument(
        "--grace-ms",
        type=int,
        default=None,
        help="input tolerated this long after a toolCall (frames in flight); default: scenario's",
    )
    parser.add_argument(
        "--pong-delay-ms",
        type=int,
        default=0,
        help="answer keepalive pings this late, as the service may (8-30 s); default: at once",
    )
    parser.add_argument(
        "--resumption",
        choices=RESUMPTION_MODES,
        default="replay",
        help="resuming after the user's turn was committed: answer it, or wait to be asked again",
    )
    parser.add_argument(
        "--replay-ids",
        choices=REPLAY_ID_MODES,
        default="new",
        help="a replayed turn's toolCall keeps its first call ids, or gets new ones",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed the call ids (default: different every run)"
    )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> tuple[EmulatorSettings, str]:
    """Build emulator settings from parsed options, and where the key came from; raises
    ScenarioError for a bad scenario, :class:`ApiKeyError` for a key that cannot be read."""
    scenario = default_scenario() if args.scenario is None else load_scenario(args.scenario)
    key, key_from = api_key(args.api_key_file, environ)
    settings = EmulatorSettings(
        scenario=scenario,
        cert_out=args.cert_out,
        host=args.host,
        port=args.port,
        api_key=key,
        trace_path=args.trace,
        pace=args.pace,
        grace_ms=args.grace_ms,
        pong_delay_ms=args.pong_delay_ms,
        resumption=args.resumption,
        replay_ids=args.replay_ids,
        seed=args.seed,
    )
    return settings, key_from


async def serve_until_stopped(settings: EmulatorSettings, key_from: str) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(settings) as emulator:
        print(
            f"Live stand-in at {emulator.base_url} (scenario {settings.scenario.name!r}); "
            f"trust {settings.cert_out}; api key {key_from}",
            flush=True,
        )
        await stop.wait()


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of the ``emulator`` sub-command; returns the exit status."""
    if args.api_key is not None:
        print(
            "pi-live-voice emulator: --api-key is not taken (a key on the command line shows "
            f"in ps): put it in ${KEY_VARIABLE} or a file named by --api-key-file",
            file=sys.stderr,
        )
        return 2
    try:
        settings, key_from = settings_from_args(args)
    except (ScenarioError, ApiKeyError) as exc:
        print(f"pi-live-voice emulator: {exc}", file=sys.stderr)
        return 78
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_stopped(settings, key_from))
    return 0
