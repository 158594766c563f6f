"""Starting a child Python process of the bench and stopping it by its PID, whatever happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment, with the project importable from the child."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


@contextlib.asynccontextmanager
async def child(
    *args: str, env: Mapping[str, str] | None = None, stdout_pipe: bool = False
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python *args`` from the project root; killed by PID if still running at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env=child_env(env),
        stdout=asyncio.subprocess.PIPE if stdout_pipe else None,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
