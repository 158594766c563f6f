"""The ``pi-live-voice`` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from device.journal import setup_logging

Handler = Callable[[argparse.Namespace], int]
DEFAULT_CONFIG = Path("/etc/pi-live-voice/config.toml")


def _run_emulator(args: argparse.Namespace) -> int:
    from services.emulator.main import run_from_args

    return run_from_args(args)


def _run_demo(args: argparse.Namespace) -> int:
    from device.demo import run_demo

    status: int = run_demo(args)
    return status


def _run_devices(args: argparse.Namespace) -> int:
    from device.audio_devices import print_devices
    from device.pins import print_gpio

    status: int = print_devices(args)
    print_gpio()
    return status


def _run_daemon(args: argparse.Namespace) -> int:
    from device.daemon import run_daemon

    return run_daemon(args.config)


def _check_config(args: argparse.Namespace) -> int:
    from device.config import EX_CONFIG, ConfigError, load_api_key, load_settings
    from services.live.profiles import plan_setup

    try:
        settings = load_settings(args.config)
        api_key = load_api_key()
    except ConfigError as exc:
        print(f"pi-live-voice: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(
        f"{args.config}: OK ({len(settings.outputs)} outputs, button mode {settings.button.mode})"
    )
    print(f"profile: {settings.live.profile.name} (model {settings.live.model})")
    for key, reason in plan_setup(settings.live.profile, settings.live.setup_request).left_out:
        print(f"warning: live.{key} will be left out of the setup: {reason}")
    if settings.daily_budget is not None:
        print(
            f"daily budget: ${settings.daily_budget:.2f}: past it no session opens until "
            "midnight or a long press"
        )
    if api_key is None:
        print("note: no API key in GEMINI_API_KEY, GOOGLE_API_KEY or $CREDENTIALS_DIRECTORY")
    return _check_transport()


def _check_transport() -> int:
    """Prove the SDK internals the send path reads are still where the code expects."""
    import asyncio

    from services.live.transport import SEAM_ADVICE, check_seam

    problem = asyncio.run(check_seam())
    if problem is not None:
        print(f"pi-live-voice: transport seam broken: {problem}; {SEAM_ADVICE}", file=sys.stderr)
        return 1
    print("transport seam: OK (google-genai and websockets internals as pinned)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="pi-live-voice",
        description="Voice device daemon for the Gemini Live API.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    from services.emulator.main import add_emulator_arguments

    emulator = sub.add_parser(
        "emulator", help="serve the local Gemini Live stand-in (TLS WebSocket, real protocol rules)"
    )
    add_emulator_arguments(emulator)
    emulator.set_defaults(handler=_run_emulator)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML config file")
    run.set_defaults(handler=_run_daemon)

    check = sub.add_parser("check-config", help="validate the config file and exit")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML config file")
    check.set_defaults(handler=_check_config)

    demo = sub.add_parser("demo", help="run the embedded demo against the local stand-in")
    demo.add_argument("--out", default="demo-out", help="folder for the trace and reply audio")
    demo.set_defaults(handler=_run_demo)

    devices = sub.add_parser(
        "devices", help="list ALSA capture and playback PCMs, the GPIO chips and the pin driver"
    )
    devices.set_defaults(handler=_run_devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit status."""
    from device.config import known_api_keys

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, os.environ, known_api_keys(os.environ))
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
