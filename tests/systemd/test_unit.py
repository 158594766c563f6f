"""The unit file through the real ``systemd-analyze``, and ``make install`` into a DESTDIR."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.systemd.conftest import DAEMON

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "pi-live-voice.service"
EXAMPLE = REPO / "systemd" / "config.example.toml"
EXEC_START = re.compile(r"^ExecStart=(\S+)", re.MULTILINE)
MAX_EXPOSURE = 2.0


def with_exec_start(unit: Path, program: Path, out: Path) -> Path:
    """A copy of ``unit`` whose ExecStart names ``program``: verify checks that it exists,
    and the path the unit names (under /opt) does not exist on a test machine."""
    text = unit.read_text()
    assert len(EXEC_START.findall(text)) == 1
    out.write_text(EXEC_START.sub(f"ExecStart={program}", text))
    return out


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``systemd-analyze``; it needs no running systemd for these verbs."""
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_unit_verifies_clean(tmp_path: Path) -> None:
    unit = with_exec_start(UNIT, DAEMON, tmp_path / "pi-live-voice.service")
    result = analyze("verify", "--man=no", str(unit))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_unit_exposure_is_at_most_2_and_every_gap_is_explained(tmp_path: Path) -> None:
    unit = with_exec_start(UNIT, DAEMON, tmp_path / "pi-live-voice.service")
    result = analyze("security", "--offline=yes", "--threshold=20", "--no-pager", str(unit))
    assert result.returncode == 0, result.stdout + result.stderr
    [exposure] = re.findall(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert float(exposure) <= MAX_EXPOSURE
    # Each directive the daemon cannot live with is named in a comment saying why.
    comments = " ".join(
        line for line in UNIT.read_text().splitlines() if line.lstrip().startswith("#")
    )
    gaps = re.findall(r"^✗ (\S+?)=", result.stdout, re.MULTILINE)
    assert gaps
    unexplained = [name for name in gaps if f"{name}=" not in comments]
    assert unexplained == []


def make_install(destdir: Path, prefix: str) -> subprocess.CompletedProcess[str]:
    """``make install`` into ``destdir``, copying this checkout's venv instead of building one."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    environ.pop("MFLAGS", None)
    return subprocess.run(
        [
            "make",
            "-C",
            str(REPO),
            "install",
            f"DESTDIR={destdir}",
            f"PREFIX={prefix}",
            f"VENV_SRC={Path(sys.executable).parent.parent}",
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )


def test_make_install_lays_out_a_service_that_verifies(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    prefix = "/opt/plv"
    groups = Path("/etc/group").read_text()
    try:
        result = make_install(dest, prefix)
        assert result.returncode == 0, result.stdout + result.stderr
        # Under DESTDIR the gpio rule is staged, and the build host's groups are left alone.
        rule = dest / "etc/udev/rules.d/60-pi-live-voice-gpio.rules"
        assert rule.read_bytes() == (REPO / "systemd" / rule.name).read_bytes()
        assert rule.stat().st_mode & 0o777 == 0o644
        assert Path("/etc/group").read_text() == groups
        assert "systemctl daemon-reload && systemctl enable --now pi-live-voice" in result.stdout
        assert "systemd-creds encrypt --name=gemini-api-key" in result.stdout

        unit = dest / "etc/systemd/system/pi-live-voice.service"
        venv = dest / "opt/plv/venv"
        config = dest / "etc/pi-live-voice/config.toml"
        credentials = dest / "etc/pi-live-voice/credentials"
        assert unit.stat().st_mode & 0o777 == 0o644
        assert EXEC_START.findall(unit.read_text()) == ["/opt/plv/venv/bin/pi-live-voice"]
        assert (venv / "bin/pi-live-voice").read_text().startswith("#!/opt/plv/venv/bin/python")
        assert config.read_text() == EXAMPLE.read_text()
        assert credentials.stat().st_mode & 0o777 == 0o700
        key = credentials / "gemini-api-key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_bytes() == b""

        # The installed unit verifies once its ExecStart names the staged program.
        staged = with_exec_start(unit, venv / "bin/pi-live-voice", tmp_path / unit.name)
        verified = analyze("verify", "--man=no", str(staged))
        assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")

        # The installed entry point runs (through the staged interpreter: its shebang names
        # the final place), and takes the installed config.
        python = str(venv / "bin/python")
        checked = subprocess.run(
            [python, str(venv / "bin/pi-live-voice"), "check-config", "--config", str(config)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr

        # A second install keeps the operator's config and key.
        config.write_text(config.read_text() + "# edited on the device\n")
        key.write_text("the-operators-key")
        again = make_install(dest, prefix)
        assert again.returncode == 0, again.stdout + again.stderr
        assert config.read_text().endswith("# edited on the device\n")
        assert key.read_text() == "the-operators-key"
    finally:
        shutil.rmtree(dest, ignore_errors=True)  # a copy of the whole venv: do not keep it
