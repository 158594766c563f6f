"""The soak: the daemon for an hour (``--minutes``) against the stand-in, in real time, traced.

The daemon runs as installed (``pi-live-voice run``, in :mod:`bench.soak_child` with
``tracemalloc`` on) on the virtual sound card with gpiozero's mock pins. The user asks for the
kitchen light every ``turn_every_s`` (50 s); every turn calls ``set_output`` and ends its
connection with ``goAway``, so the daemon reconnects (resuming the conversation) once per
turn. The child writes RSS and traced memory every ``every_s``; this side compares its
tracemalloc snapshots after the warm-up and at the end, and reports the sites that grew most.

``python -m bench.soak --minutes 60`` runs it alone and prints the result as JSON; ``make
bench`` runs it too (``--soak-min``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cost import daemon_config, daemon_env
from bench.mic import ScriptedMic
from bench.plans import LIGHT
from bench.probe_runner import ROOT
from bench.standin import standin
from bench.waiting import until
from device.virtual_audio import VIRTUAL_PCMS, speak

log = logging.getLogger(__name__)

REQUEST = "Turn on the kitchen light, please."
TOP_SITES = 10
STOP_LIMIT_S = 15.0
# The child's checkpoints are minutes apart; it has this long beyond its schedule to finish.
SLACK_S = 120.0


@dataclass(frozen=True)
class SoakResult:
    """RSS over the soak, and where the traced memory grew after the warm-up.

    ``rss_*`` is the process's RSS (tracemalloc's own tables included); ``untraced_*`` is RSS
    less those tables, near what the daemon holds without tracemalloc; ``traced_*`` is the
    live Python heap tracemalloc sees. Each at the first checkpoint, after the warm-up, and at
    the end."""

    minutes: float
    warmup_min: float
    turn_every_s: float
    turns: int
    reconnects: int
    rss_start_mib: float
    rss_warm_mib: float
    rss_end_mib: float
    rss_growth_after_warmup_mib: float
    untraced_warm_mib: float
    untraced_end_mib: float
    untraced_growth_after_warmup_mib: float
    traced_warm_mib: float
    traced_end_mib: float
    traced_growth_after_warmup_mib: float
    checkpoints: list[dict[str, Any]]
    top_growth: list[dict[str, Any]]
    exit_status: int | None


def scenario(turns: int) -> dict[str, Any]:
    """Every turn switches the light, answers, and ends its connection with ``goAway``."""
    script = [
        {
            "tool_calls": [{"name": "set_output", "args": {"name": LIGHT, "on": n % 2 == 0}}],
            "reply": "The kitchen light is switched.",
            "faults": [{"kind": "go_away", "at": "reply", "time_left_ms": 500}],
        }
        for n in range(turns)
    ]
    return {"name": "bench-soak", "turns": script}


def _site(filename: str) -> str:
    """A frame's file named by the project or the package it is in, not by this machine."""
    marker = "site-packages" + os.sep
    if marker in filename:
        return filename.split(marker, 1)[1]
    path = Path(filename)
    for base in (ROOT, Path(sysconfig.get_paths()["stdlib"])):
        with contextlib.suppress(ValueError):
            return str(path.relative_to(base))
    return path.name


def top_growth(warm: Path, end: Path, top: int = TOP_SITES) -> list[dict[str, Any]]:
    """The lines whose live allocations grew most from ``warm`` to ``end``, with the call
    path (innermost last) of each."""
    ignore = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>"),
    )
    before = tracemalloc.Snapshot.load(str(warm)).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(end)).filter_traces(ignore)
    paths = {
        stat.traceback[-1]: stat.traceback for stat in after.compare_to(before, "traceback")[:200]
    }
    rows = []
    for stat in after.compare_to(before, "lineno")[:top]:
        frame = stat.traceback[-1]
        path = paths.get(frame)
        rows.append(
            {
                "site": f"{_site(frame.filename)}:{frame.lineno}",
                "growth_kib": round(stat.size_diff / 1024, 1),
                "blocks": stat.count_diff,
                "size_kib": round(stat.size / 1024, 1),
                "via": [] if path is None else [f"{_site(f.filename)}:{f.lineno}" for f in path],
            }
        )
    return rows


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


async def _stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_LIMIT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode


def _tail(log_path: Path) -> str:
    """The end of the soak daemon's log, for an error that says why it failed."""
    return log_path.read_text(errors="replace")[-2000:]


async def measure(
    workdir: Path,
    minutes: float,
    *,
    warmup_min: float = 10.0,
    every_s: float = 60.0,
    turn_every_s: float = 50.0,
    trace_frames: int = 8,
) -> SoakResult:
    """Soak the daemon for ``minutes``; RSS and growth after ``warmup_min``."""
    home = workdir / "soak-alsa"
    (home / "alsa").mkdir(parents=True, exist_ok=True)
    (home / "alsa" / "asoundrc").write_text(VIRTUAL_PCMS)
    fifo = workdir / "soak-mic.fifo"
    os.mkfifo(fifo)
    out = workdir / "soak-out"
    out.mkdir()
    utterance = await asyncio.to_thread(speak, REQUEST)
    mic = ScriptedMic(fifo)
    mic.start()
    turns = int(minutes * 60 / turn_every_s) + 10
    try:
        async with standin(scenario(turns), workdir, pace=1.0) as em:
            config = workdir / "soak-config.toml"
            config.write_text(daemon_config(em.base_url, em.settings.cert_out))
            env = daemon_env(home, fifo, workdir / "soak-notify.sock")
            del env["NOTIFY_SOCKET"]  # nobody reads it here
            daemon_log = (workdir / "soak-daemon.log").open("wb")
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.soak_child",
                str(config),
                str(out),
                str(minutes),
                str(warmup_min),
                str(every_s),
                str(trace_frames),
                cwd=ROOT,
                env=env,
                stderr=daemon_log,
            )
            try:
                deadline = time.monotonic() + minutes * 60 + SLACK_S
                checkpoints = out / "checkpoints.jsonl"
                # The first request waits for the daemon's first session: said earlier, it
                # would reach nobody.
                try:
                    await until(
                        lambda: (
                            bool(em.trace.select("in", kind="setup"))
                            or process.returncode is not None
                        ),
                        every=0.2,
                        within=SLACK_S,
                    )
                except TimeoutError:
                    raise RuntimeError(
                        f"the soak's daemon opened no session in {SLACK_S:g} s: "
                        + _tail(workdir / "soak-daemon.log")
                    ) from None
                while time.monotonic() < deadline and process.returncode is None:
                    mic.say(utterance)
                    with contextlib.suppress(TimeoutError):
                        await until(
                            lambda: any(r.get("done") for r in _records(checkpoints)),
                            every=1.0,
                            within=turn_every_s,
                        )
                        break
            finally:
                status = await _stop(process)
                daemon_log.close()
            records = em.trace.select()
    finally:
        mic.stop()
    points = [r for r in _records(out / "checkpoints.jsonl") if "rss_mib" in r]
    traced = trace_frames > 0
    if not points or not points[-1].get("end"):
        tail = _tail(workdir / "soak-daemon.log")
        raise RuntimeError(f"the soak's daemon stopped early (exit {status}): {tail}")
    warm = next(p for p in points if p.get("warm"))
    end = points[-1]
    setups = sum(1 for r in records if r["event"] == "in" and r.get("kind") == "setup")
    done = sum(
        1 for r in records if r["event"] == "out" and r.get("kind") == "serverContent.turnComplete"
    )
    return SoakResult(
        minutes=minutes,
        warmup_min=warmup_min,
        turn_every_s=turn_every_s,
        turns=done,
        reconnects=max(0, setups - 1),
        rss_start_mib=points[0]["rss_mib"],
        rss_warm_mib=warm["rss_mib"],
        rss_end_mib=end["rss_mib"],
        rss_growth_after_warmup_mib=round(end["rss_mib"] - warm["rss_mib"], 2),
        untraced_warm_mib=warm["rss_untraced_mib"],
        untraced_end_mib=end["rss_untraced_mib"],
        untraced_growth_after_warmup_mib=round(
            end["rss_untraced_mib"] - warm["rss_untraced_mib"], 2
        ),
        traced_warm_mib=warm["traced_mib"],
        traced_end_mib=end["traced_mib"],
        traced_growth_after_warmup_mib=round(end["traced_mib"] - warm["traced_mib"], 2),
        checkpoints=points,
        top_growth=top_growth(out / "warm.snap", out / "end.snap") if traced else [],
        exit_status=status,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the soak alone; print its result as JSON (and to ``--out``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup-min", type=float, default=10.0)
    parser.add_argument("--every-s", type=float, default=60.0)
    parser.add_argument("--turn-every-s", type=float, default=50.0)
    parser.add_argument(
        "--trace-frames", type=int, default=8, help="tracemalloc's depth; 0: RSS untraced"
    )
    parser.add_argument("--out", type=Path, help="also write the result here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="plv-soak-") as tmp:
        result = asyncio.run(
            measure(
                Path(tmp),
                args.minutes,
                warmup_min=args.warmup_min,
                every_s=args.every_s,
                turn_every_s=args.turn_every_s,
                trace_frames=args.trace_frames,
            )
        )
    text = json.dumps(asdict(result), indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
