"""The project's own ``make test`` on Debian 13 "trixie" (Python 3.13), in a chroot.

A fresh minbase trixie rootfs gets a copy of this checkout; ``make test`` installs its own
system packages with apt there, builds its venv and must pass. Run by ``make test-system``.
"""

from __future__ import annotations

import re

from tests.system.rootfs import cached_rootfs, chroot, copy_checkout, overlay

SUITE = "trixie"


def test_make_test_passes_on_trixie() -> None:
    with overlay(cached_rootfs(SUITE)) as root, chroot(root, SUITE) as guest:
        src = copy_checkout(root)
        guest.run("apt-get update -q", timeout=600)
        result = guest.run(f"make -C {src} test", timeout=3600, check=False)
        python = guest.run("python3 --version", timeout=60).stdout
        procps = guest.run("dpkg-query -W -f='${Status}' procps", timeout=60, check=False)
    tail = result.stdout[-5000:] + result.stderr[-5000:]
    assert result.returncode == 0, tail
    assert python.startswith("Python 3.13"), python
    [summary] = re.findall(r"^=+ (\d+ passed.*) in [\d.]+s", result.stdout, re.MULTILINE)[-1:]
    assert "failed" not in summary, summary
    assert "error" not in summary, summary
    print(f"{SUITE}: {python.strip()}: {summary}; procps: {procps.stdout or 'not installed'}")
