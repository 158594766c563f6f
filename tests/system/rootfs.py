"""Debian root file systems for the system checks: built once, cached, used through overlays.

A rootfs is ``debootstrap --variant=minbase`` of a suite and architecture, cached under
``PLV_TEST_CACHE`` (default ``/var/cache/pi-live-voice-test``) in a directory named by a hash
of everything that went into it, so that a change of the package list builds a new one. Each
run works on an overlay over the cached tree, so the cache stays as debootstrap left it and a
run starts from a fresh system without copying 1 GB. Every mount is undone on the way out,
also when a check fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PLV_TEST_CACHE", "/var/cache/pi-live-voice-test"))
MIRROR = "http://deb.debian.org/debian"
# What the cached rootfs holds besides minbase: an init to boot, make to run `make install`,
# the CA bundle apt and pip use. Everything the project needs comes from its own Makefile.
BOOT_PACKAGES = ("systemd", "systemd-sysv", "dbus", "make", "ca-certificates")
# env -i plus this: the host's settings stay out. PIP_CERT: pip (before 24.2 it ignores the
# system store) trusts the CA bundle copied in from the host, as apt does.
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "DEBIAN_FRONTEND": "noninteractive",
}
HOST_ARCH = subprocess.run(
    ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
).stdout.strip()


def run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a host command to completion, failing with its output if it fails."""
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``CACHE/name.lock`` (another run builds the same rootfs)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cache_key(suite: str, arch: str, packages: Sequence[str]) -> str:
    """The directory name of a rootfs: what it is, and a hash of all that went into it."""
    recipe = f"{suite} {arch} minbase {MIRROR} {' '.join(sorted(packages))}"
    return f"{suite}-{arch}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def cached_rootfs(
    suite: str, arch: str = HOST_ARCH, packages: Sequence[str] = BOOT_PACKAGES
) -> Path:
    """The cached minbase rootfs of ``suite`` for ``arch``, debootstrapped on first use.

    A foreign architecture is bootstrapped in two stages, the second under qemu-user through
    binfmt (see :func:`tests.system.arm64.binfmt`, which must be active).
    """
    name = cache_key(suite, arch, packages)
    target = CACHE / name
    with locked(name):
        if (target / ".complete").exists():
            return target
        staging = CACHE / f"{name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}"]
        if arch != HOST_ARCH:
            command += [f"--arch={arch}", "--foreign"]
        log.info("debootstrap %s/%s into %s", suite, arch, staging)
        run([*command, suite, str(staging), MIRROR], timeout=1800)
        if arch != HOST_ARCH:
            second = ["chroot", str(staging), "env", "-i", f"PATH={GUEST_ENV['PATH']}"]
            run([*second, "/debootstrap/debootstrap", "--second-stage"], timeout=3600)
        # Nothing inside refers to the name it was built under: the rename is safe.
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (target / ".complete").touch()
        return target


@dataclass
class Mounts:
    """Mount points taken in order, undone in reverse."""

    points: list[Path] = field(default_factory=list)

    def mount(self, *args: str, at: Path) -> None:
        """``mount ARGS at``, remembered for :meth:`undo`."""
        at.mkdir(parents=True, exist_ok=True)
        run(["mount", *args, str(at)], timeout=60)
        self.points.append(at)

    def undo(self) -> None:
        """Unmount everything, innermost first; a busy mount is detached lazily."""
        errors = []
        while self.points:
            point = self.points.pop()
            done = subprocess.run(
                ["umount", "-R", str(point)], capture_output=True, timeout=60, check=False
            )
            if done.returncode != 0:
                lazy = subprocess.run(
                    ["umount", "-R", "-l", str(point)], capture_output=True, timeout=60, check=False
                )
                if lazy.returncode != 0:
                    errors.append(f"{point}: {lazy.stderr.decode(errors='replace').strip()}")
        if errors:
            raise RuntimeError("could not unmount " + "; ".join(errors))


@contextlib.contextmanager
def overlay(lower: Path) -> Iterator[Path]:
    """A writable view of the cached rootfs ``lower``; the writes go away afterwards."""
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"run-{lower.name}-", dir=CACHE))
    mounts = Mounts()
    try:
        (scratch / "upper").mkdir()
        (scratch / "work").mkdir()
        options = f"lowerdir={lower},upperdir={scratch / 'upper'},workdir={scratch / 'work'}"
        mounts.mount("-t", "overlay", "overlay", "-o", options, at=scratch / "root")
        yield scratch / "root"
    finally:
        try:
            mounts.undo()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def trust_host(root: Path) -> None:
    """Give the rootfs the host's CA trust and name resolution, for apt and pip inside.

    The host's bundle replaces the rootfs's, and is kept as a local CA file too, so that an
    update-ca-certificates run by apt inside rebuilds a bundle that still holds it.
    """
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(bundle)
    local = root / "usr/local/share/ca-certificates"
    local.mkdir(parents=True, exist_ok=True)
    (local / "host-trust.crt").write_bytes(bundle)
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)


def copy_checkout(root: Path, to: str = "/root/src") -> str:
    """Copy this checkout's files (tracked and new, not ignored ones such as .venv) to ``to``
    inside ``root``: what a user would clone, including uncommitted work."""
    listed = run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        timeout=60,
    ).stdout
    files = [name for name in listed.split("\0") if name and (REPO / name).exists()]
    dest = root / to.lstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return to


@dataclass
class Chroot:
    """Commands run in a rootfs with proc, sys, dev and the caches mounted."""

    root: Path

    def run(
        self, command: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``command`` through bash inside, with a clean environment; its output is returned
        (and the error raised names it, when ``check``)."""
        args = ["chroot", str(self.root), "env", "-i"]
        args += [f"{k}={v}" for k, v in GUEST_ENV.items()]
        args += ["bash", "-eu", "-o", "pipefail", "-c", command]
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"in {self.root}: {command!r} exited {result.returncode}:\n"
                f"{result.stdout[-20000:]}\n{result.stderr[-20000:]}"
            )
        return result


def package_caches(root: Path, suite: str, arch: str, mounts: Mounts) -> None:
    """Keep apt's downloads and pip's wheels between runs (outside the rootfs): the packages
    are still installed from scratch, only not downloaded or compiled again."""
    for cache, inside in (("apt", "var/cache/apt/archives"), ("pip", "root/.cache/pip")):
        kept = CACHE / f"{cache}-{suite}-{arch}"
        kept.mkdir(parents=True, exist_ok=True)
        mounts.mount("--bind", str(kept), at=root / inside)


@contextlib.contextmanager
def chroot(root: Path, suite: str, arch: str = HOST_ARCH) -> Iterator[Chroot]:
    """``root`` ready for chroot: the kernel's file systems and the caches mounted, the host's
    trust copied in. Everything is unmounted afterwards."""
    trust_host(root)
    mounts = Mounts()
    try:
        mounts.mount("-t", "proc", "proc", at=root / "proc")
        # rbind: journald needs the cgroup tree; rslave: unmounting it here leaves the host's.
        mounts.mount("--rbind", "/sys", at=root / "sys")
        run(["mount", "--make-rslave", str(root / "sys")], timeout=60)
        mounts.mount("--bind", "/dev", at=root / "dev")
        mounts.mount("--bind", "/dev/pts", at=root / "dev/pts")
        mounts.mount("--bind", "/dev/shm", at=root / "dev/shm")
        package_caches(root, suite, arch, mounts)
        yield Chroot(root)
    finally:
        mounts.undo()
