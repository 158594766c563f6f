"""``pi-live-voice emulator``: serve the stand-in until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from services.emulator.scenario import ScenarioError, default_scenario, load_scenario
from services.emulator.server import RESUMPTION_MODES, Emulator, EmulatorSettings

log = logging.getLogger(__name__)


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
        "--api-key", default="emulator-key", help="the x-goog-api-key clients must send"
    )
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
        "--seed", type=int, default=None, help="seed the call ids (default: different every run)"
    )


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """Build emulator settings from parsed options; raises ScenarioError for a bad scenario."""
    scenario = default_scenario() if args.scenario is None else load_scenario(args.scenario)
    return EmulatorSettings(
        scenario=scenario,
        cert_out=args.cert_out,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        trace_path=args.trace,
        pace=args.pace,
        grace_ms=args.grace_ms,
        pong_delay_ms=args.pong_delay_ms,
        resumption=args.resumption,
        seed=args.seed,
    )


async def serve_until_stopped(settings: EmulatorSettings) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(settings) as emulator:
        print(
            f"Live stand-in at {emulator.base_url} (scenario {settings.scenario.name!r}); "
            f"trust {settings.cert_out}; api key {settings.api_key!r}",
            flush=True,
        )
        await stop.wait()


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of the ``emulator`` sub-command; returns the exit status."""
    try:
        settings = settings_from_args(args)
    except ScenarioError as exc:
        print(f"pi-live-voice emulator: {exc}", file=sys.stderr)
        return 78
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_stopped(settings))
    return 0
