"""The project on aarch64, the Raspberry Pi's architecture, under qemu-user emulation.

An arm64 Debian 13 "trixie" rootfs (what Raspberry Pi OS is built on today, with Python
3.13: the newest interpreter the pinned wheels must serve) is bootstrapped in two stages,
the second under qemu through binfmt_misc. ``make install`` there installs the runtime system
packages and the pinned requirements into the device's venv, as on a Pi (pyalsaaudio,
systemd-python and lgpio compile), then the installed ``pi-live-voice demo`` (with espeak-ng,
the demo's voice) must exit 0. Run by ``make test-arm64`` (as root).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.system.rootfs import cached_rootfs, chroot, copy_checkout, overlay, run

SUITE = "trixie"
ARCH = "arm64"
PACKAGES = ("make", "ca-certificates")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
ENTRY = "qemu-aarch64"
INSTALLED = "/opt/pi-live-voice/venv/bin/pi-live-voice"


@contextlib.contextmanager
def binfmt() -> Iterator[None]:
    """qemu-aarch64 registered with binfmt_misc while the context lasts. What was not there
    before (the binfmt_misc mount, the enabled entry) is undone after; what was, stays."""
    mounted_here = not (BINFMT / "status").exists()
    if mounted_here:
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], timeout=60)
    enabled_here = False
    try:
        entry = BINFMT / ENTRY
        if not (entry.exists() and entry.read_text().startswith("enabled")):
            run(["update-binfmts", "--enable", ENTRY], timeout=60)
            enabled_here = True
        yield
    finally:
        if enabled_here:
            run(["update-binfmts", "--disable", ENTRY], timeout=60)
        if mounted_here:
            run(["umount", str(BINFMT)], timeout=60)


def test_the_demo_runs_on_arm64() -> None:
    with binfmt():
        with (
            overlay(cached_rootfs(SUITE, ARCH, PACKAGES)) as root,
            chroot(root, SUITE, ARCH) as guest,
        ):
            machine = guest.run("uname -m", timeout=60).stdout.strip()
            src = copy_checkout(root)
            guest.run("apt-get update -q", timeout=1200)
            guest.run(f"make -C {src} install", timeout=5400)
            guest.run("apt-get install -y -q --no-install-recommends espeak-ng", timeout=1200)
            demo = guest.run(
                f"cd /root && {INSTALLED} demo --out /root/demo-out", timeout=1200, check=False
            )
        assert machine == "aarch64"
        assert demo.returncode == 0, demo.stdout[-5000:] + demo.stderr[-5000:]
        assert "Kitchen light (GPIO5): ON" in demo.stdout
        assert "Protocol violations: none" in demo.stdout
