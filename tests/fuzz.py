"""``make fuzz``: long runs of the boundary generators, counting what was mishandled.

    python -m tests.fuzz --configs 1000 --frames 2000 --sdk-frames 40

Hostile configs go through ``check-config`` in this process; malformed frames through the
pure boundary, and some through the real SDK against the stand-in's hostile mode. Each
mishandled case is printed on one line; the last line is ``N tried, M mishandled``, and the
exit status is 1 when M is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.live.inbound import ProtocolError, parse_server_frame
from tests.conftest import emulator_factory_in
from tests.device.config_judge import try_hostile
from tests.services.live.hostile import converse, judge
from tests.strategies import HostileConfig, hostile_configs, malformed_frames, mistyped_frames


class Tally:
    """Cases tried and the mishandled ones, printed as they come."""

    def __init__(self) -> None:
        self.tried = 0
        self.mishandled = 0

    def record(self, what: str, problem: str | None) -> None:
        self.tried += 1
        if problem is not None:
            self.mishandled += 1
            print(f"mishandled: {what}: {problem}", flush=True)


def _run(strategy: st.SearchStrategy[Any], examples: int, body: Callable[[Any], None]) -> None:
    """Draw ``examples`` cases of ``strategy`` (no shrinking, no database) into ``body``."""
    if examples <= 0:
        return
    profile = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    profile(given(strategy)(body))()


def fuzz_configs(tally: Tally, examples: int) -> None:
    """Hostile configs through check-config."""

    def one(case: HostileConfig) -> None:
        tally.record(f"config fault at {case.key or 'the file'}", try_hostile(case))

    _run(hostile_configs(), examples, one)


def fuzz_frames(tally: Tally, examples: int) -> None:
    """Malformed frames through the boundary alone."""

    def one(frame: str | bytes) -> None:
        try:
            parse_server_frame(frame)
        except ProtocolError as exc:
            problem = None if "\n" not in str(exc) else "a multi-line error"
        except Exception as exc:
            problem = f"raised {type(exc).__name__}"
        else:
            problem = "accepted"
        tally.record(f"frame {frame[:40]!r}", problem)

    _run(malformed_frames(), examples, one)


def fuzz_sdk_frames(tally: Tally, examples: int, folder: Path) -> None:
    """Mistyped frames through the real SDK against the stand-in."""
    factory = emulator_factory_in(folder)

    def one(frame: str) -> None:
        outcome = asyncio.run(converse(factory, {"text": frame}))
        problems = judge(outcome, tolerated=False)
        tally.record(f"sdk frame {frame[:40]!r}", "; ".join(problems) or None)

    _run(mistyped_frames(), examples, one)


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzers; 1 if anything was mishandled."""
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--sdk-frames", type=int, default=40)
    args = parser.parse_args(argv)
    # check-config sets up logging; the sessions' reconnect lines would drown the report.
    logging.disable(logging.WARNING)
    tally = Tally()
    fuzz_configs(tally, args.configs)
    fuzz_frames(tally, args.frames)
    with tempfile.TemporaryDirectory(prefix="plv-fuzz-") as folder:
        fuzz_sdk_frames(tally, args.sdk_frames, Path(folder))
    print(f"{tally.tried} tried, {tally.mishandled} mishandled")
    return 1 if tally.mishandled else 0


if __name__ == "__main__":
    raise SystemExit(main())
