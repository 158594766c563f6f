"""Running many conversations at once: a few worker processes, a bounded number in each.

A worker runs its share of the jobs on one event loop, at most ``concurrency`` at a time,
while a probe measures how late that loop wakes up: the stand-in's grace window is 100 ms of
wall time, so a report of zero closures is only worth something if the client's loop was
never held up for anything near that.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.families import Outcome, RunPlan, run_one

LAG_PERIOD_S = 0.02


@dataclass(frozen=True)
class Job:
    """One client through one plan; ``lane`` jobs share a concurrency bound."""

    plan: RunPlan
    client: str
    lane: str


@dataclass(frozen=True)
class WorkerResult:
    """A worker's outcomes, and how late its event loop woke up (milliseconds)."""

    outcomes: list[Outcome]
    loop_lag_ms: list[float]


def quiet_logging() -> None:
    """Only errors from the libraries and the product: thousands of runs log a lot."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("services", "device", "google_genai", "websockets", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


async def _lag_probe(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(LAG_PERIOD_S)
        samples.append(1000 * (time.monotonic() - before - LAG_PERIOD_S))


async def run_jobs(jobs: list[Job], concurrency: dict[str, int], workdir: Path) -> WorkerResult:
    """Run ``jobs`` on this loop, at most ``concurrency[lane]`` of a lane at a time."""
    limits = {lane: asyncio.Semaphore(n) for lane, n in concurrency.items()}
    lag: list[float] = []
    stop = asyncio.Event()

    async def bounded(job: Job) -> Outcome:
        async with limits[job.lane]:
            return await run_one(job.plan, job.client, workdir)

    if jobs:
        # The first conversation pays for the lazy imports and first connections: a warm-up,
        # not counted, so that the lag probe sees the loop as it is during the runs.
        await run_one(jobs[0].plan, jobs[0].client, workdir)
    probe = asyncio.create_task(_lag_probe(lag, stop), name="loop-lag-probe")
    try:
        outcomes = await asyncio.gather(*(bounded(job) for job in jobs))
    finally:
        stop.set()
        await probe
    return WorkerResult(list(outcomes), lag)


def _worker(jobs: list[Job], concurrency: dict[str, int]) -> WorkerResult:
    quiet_logging()
    workdir = Path(tempfile.mkdtemp(prefix="plv-bench-"))
    try:
        return asyncio.run(run_jobs(jobs, concurrency, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_in_workers(jobs: list[Job], workers: int, concurrency: dict[str, int]) -> WorkerResult:
    """Spread ``jobs`` over ``workers`` fresh processes and gather what they return."""
    shares = [jobs[i::workers] for i in range(workers)]
    # spawn: each worker starts clean, not as a copy of a parent holding threads and loops.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_worker, share, concurrency) for share in shares if share]
        results = [future.result() for future in futures]
    return WorkerResult(
        [o for r in results for o in r.outcomes], [x for r in results for x in r.loop_lag_ms]
    )
