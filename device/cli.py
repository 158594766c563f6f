"""The ``pi-live-voice`` command: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _run_emulator(args: argparse.Namespace) -> int:
    from services.emulator.main import run_from_args

    return run_from_args(args)


def _run_demo(args: argparse.Namespace) -> int:
    from device.demo import run_demo

    status: int = run_demo(args)
    return status


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

    demo = sub.add_parser("demo", help="run the embedded demo against the local stand-in")
    demo.add_argument("--out", default="demo-out", help="folder for the trace and reply audio")
    demo.set_defaults(handler=_run_demo)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
