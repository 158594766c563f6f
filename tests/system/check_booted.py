"""The unit under a real systemd: ``make install`` in a minimal Debian, booted with nspawn.

For bookworm and trixie: a fresh minbase rootfs (no gpio group, no procps) gets a copy of
this checkout and runs ``make install`` in it, which builds its own venv from
requirements.lock as a device does. Then the rootfs boots with systemd as PID 1, the local
stand-in and a FIFO microphone (the ALSA ``default`` of the container) run inside it, and the
installed unit is started and put through its paces.

Run by ``make test-system`` (as root); plain ``make test`` does not collect ``check_*`` files.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.virtual_audio import speak
from tests.system.booted import Booted, booted
from tests.system.rootfs import cached_rootfs, chroot, copy_checkout, overlay

UNIT = "pi-live-voice"
API_KEY = "system-test-key"
PORT = 8765
CONF = "/etc/pi-live-voice/config.toml"
CA_FILE = "/etc/pi-live-voice/standin.pem"
CREDENTIAL = f"/run/credentials/{UNIT}.service/gemini-api-key"
VENV = "/opt/pi-live-voice/venv"
TOOL = "set_output"
CLOSE_CODE = 1008
# On the first user turn the model calls a tool, then the service closes the connection
# with 1008 while the reply plays: the daemon logs both with their journal fields.
SCENARIO = {
    "turns": [
        {
            "heard": "Turn on the kitchen light.",
            "tool_calls": [{"name": TOOL, "args": {"name": "kitchen_light", "on": True}}],
            "reply": "The light is on.",
            "faults": [{"kind": "close", "code": CLOSE_CODE, "at": "reply"}],
        }
    ]
}
# The container's sound card: capture from the FIFO the mic service feeds, playback to nowhere.
ASOUND_CONF = """\
pcm.plv_mic {
    type file slave.pcm "null" file "/dev/null" infile "/run/plv-mic/mic.fifo" format "raw"
}
pcm.plv_speaker { type file slave.pcm "null" file "/dev/null" format "raw" }
pcm.!default { type asym capture.pcm "plv_mic" playback.pcm "plv_speaker" }
"""
GOOD_CONFIG = f"""\
[live]
endpoint = "https://127.0.0.1:{PORT}"
ca_file = "{CA_FILE}"
model = "test"

[audio]
capture_device = "default"
playback_device = "default"

[gpio]
pin_factory = "mock"

[button]
pin = 17
mode = "always"

[leds]
status_pin = 22
tool_pending_pin = 27

[[outputs]]
name = "kitchen_light"
pin = 5

[daemon]
health_interval_s = 1
"""
# A config the daemon refuses (exit 78): a pin that does not exist.
BAD_CONFIG = "[button]\npin = 99\n"
TEST_TOOLS = ("mosquitto", "espeak-ng", "sox")
RUNTIME = ("gcc", "libasound2-dev", "libsystemd-dev", "python3-venv")


@dataclass
class Guest:
    """A booted container with the project installed, and what was seen while installing."""

    box: Booted
    suite: str
    gpio_group_before: bool
    packages: dict[str, str]

    def unit(self, *properties: str) -> dict[str, str]:
        """The service's ``properties``."""
        return self.box.show(f"{UNIT}.service", *properties)


def install(root: Path, suite: str) -> tuple[bool, dict[str, str]]:
    """``make install`` in the rootfs from a copy of this checkout; returns whether a gpio
    group existed before and every package's dpkg status after."""
    with chroot(root, suite) as guest:
        before = guest.run("getent group gpio", timeout=60, check=False).returncode == 0
        src = copy_checkout(root)
        guest.run("apt-get update -q", timeout=600)
        guest.run(f"make -C {src} install", timeout=3600)
        listed = guest.run("dpkg-query -W -f='${Package} ${Status}\\n'", timeout=60).stdout
    packages = {}
    for line in listed.splitlines():
        name, _, status = line.partition(" ")
        packages[name.split(":")[0]] = status
    return before, packages


def stage_guest_files(root: Path) -> None:
    """The stand-in's scenario, the mic, the sound card, the daemon's config and its key."""
    plv = root / "root/plv"
    plv.mkdir(parents=True, exist_ok=True)
    (plv / "scenario.json").write_text(json.dumps(SCENARIO))
    (plv / "standin-key").write_text(API_KEY)
    (plv / "speech.raw").write_bytes(speak("Turn on the kitchen light, please."))
    (plv / "mic.py").write_text((Path(__file__).parent / "guest_mic.py").read_text())
    (root / "etc/asound.conf").write_text(ASOUND_CONF)
    (root / CONF.lstrip("/")).write_text(GOOD_CONFIG)
    (root / "etc/pi-live-voice/credentials/gemini-api-key").write_text(API_KEY)


def start_helpers(box: Booted) -> None:
    """Start the stand-in and the mic as transient services inside the container."""
    box.run(
        f"systemd-run --unit=plv-standin -p Type=exec {VENV}/bin/pi-live-voice emulator "
        f"--port {PORT} --cert-out {CA_FILE} --scenario /root/plv/scenario.json "
        "--api-key-file /root/plv/standin-key --pace 0.2"
    )
    box.run(f"systemd-run --unit=plv-mic -p Type=exec {VENV}/bin/python /root/plv/mic.py")
    box.wait_for(
        "the stand-in listening",
        lambda: any(
            "Live stand-in at" in e.get("MESSAGE", "") for e in box.journal("-u", "plv-standin")
        ),
        within=60,
    )
    box.wait_for(
        "the mic FIFO",
        lambda: box.run("test -p /run/plv-mic/mic.fifo", check=False).returncode == 0,
        within=30,
    )


@pytest.fixture(scope="module", params=["bookworm", "trixie"])
def guest(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guest]:
    """The project installed in a fresh ``request.param`` rootfs, booted."""
    suite: str = request.param
    with overlay(cached_rootfs(suite)) as root:
        before, packages = install(root, suite)
        stage_guest_files(root)
        console = tmp_path_factory.mktemp(suite) / "console.log"
        with booted(root, console) as box:
            start_helpers(box)
            yield Guest(box, suite, before, packages)


def installed(guest: Guest, package: str) -> bool:
    """Whether dpkg has ``package`` installed in the guest."""
    return guest.packages.get(package) == "install ok installed"


def test_make_install_installs_the_runtime_packages_and_no_test_tools(guest: Guest) -> None:
    assert [p for p in RUNTIME if not installed(guest, p)] == []
    assert [p for p in TEST_TOOLS if installed(guest, p)] == []
    # Nothing of procps either: the unit's reload must not need it.
    assert not installed(guest, "procps")


def test_make_install_creates_the_gpio_group_and_its_udev_rule(guest: Guest) -> None:
    assert not guest.gpio_group_before
    group = guest.box.run("getent group gpio").stdout
    assert group.startswith("gpio:")
    rule = guest.box.run("cat /etc/udev/rules.d/60-pi-live-voice-gpio.rules").stdout
    assert 'GROUP="gpio"' in rule


def test_make_install_adds_no_rule_where_a_gpio_group_came_with_the_system(guest: Guest) -> None:
    # Raspberry Pi OS: the group exists and its own rule gives it the chips; ours is absent.
    rule = "/etc/udev/rules.d/60-pi-live-voice-gpio.rules"
    group = guest.box.run("getent group gpio").stdout
    guest.box.run(f"rm {rule}")
    guest.box.run(f"make -C /root/src install VENV_SRC={VENV}", timeout=300)
    assert guest.box.run(f"test -e {rule}", check=False).returncode == 1
    assert guest.box.run("getent group gpio").stdout == group
    # Ours again, as a plain Debian install left it, for the checks that follow.
    guest.box.run(f"install -m 0644 /root/src/systemd/{Path(rule).name} {rule}")


def test_the_unit_reaches_ready_with_a_status(guest: Guest) -> None:
    started = time.monotonic()
    # Type=notify: start returns once the daemon sent READY=1.
    guest.box.run(f"systemctl start {UNIT}", timeout=120)
    ready_s = time.monotonic() - started
    state = guest.unit("ActiveState", "SubState", "StatusText", "NRestarts", "Result")
    assert state["ActiveState"] == "active", guest.box.run(
        f"journalctl -u {UNIT} --no-pager"
    ).stdout
    assert state["SubState"] == "running"
    assert state["NRestarts"] == "0"
    assert state["StatusText"]
    # The config's mock pins win over the unit's GPIOZERO_PIN_FACTORY=lgpio: the button, LEDs
    # and the output were built on them.
    assert guest.box.journal(f"_SYSTEMD_UNIT={UNIT}.service", "PIN_FACTORY=mock")
    print(f"{guest.suite}: READY after {ready_s:.2f} s, STATUS={state['StatusText']!r}")


def test_the_credential_is_readable_by_the_service_user_alone(guest: Guest) -> None:
    main_pid = guest.unit("MainPID")["MainPID"]
    uid, gid = guest.box.run(f"stat -c '%u %g' /proc/{main_pid}").stdout.split()
    assert uid != "0"
    # Who owns the file differs (bookworm's systemd gives it to the user, trixie's keeps it
    # root's with an ACL for the user): what holds is that the user reads it and no one else.
    mode = guest.box.run(f"stat -c %a {CREDENTIAL}").stdout.strip()
    assert int(mode, 8) & 0o007 == 0
    as_service = f"setpriv --reuid={uid} --regid={gid} --clear-groups cat {CREDENTIAL}"
    assert guest.box.run(as_service).stdout == API_KEY
    denied = guest.box.run(f"runuser -u nobody -- cat {CREDENTIAL}", check=False)
    assert denied.returncode != 0
    assert API_KEY not in denied.stdout


def test_reload_rereads_the_config_in_the_running_process(guest: Guest) -> None:
    before = guest.unit("MainPID", "NRestarts")

    def reloads() -> int:
        return sum(
            e.get("MESSAGE") == "config reloaded"
            for e in guest.box.journal(f"_SYSTEMD_UNIT={UNIT}.service")
        )

    seen = reloads()
    guest.box.run(f"systemctl reload {UNIT}", timeout=60)
    guest.box.wait_for("the reload in the journal", lambda: reloads() > seen, within=30)
    assert guest.unit("MainPID", "NRestarts") == before
    assert guest.unit("ActiveState")["ActiveState"] == "active"


def test_journal_filters_find_the_tool_call_and_the_closure(guest: Guest) -> None:
    guest.box.run("systemctl kill -s SIGUSR1 plv-mic")
    tools = guest.box.wait_for(
        "a TOOL_NAME entry", lambda: guest.box.journal(f"TOOL_NAME={TOOL}"), within=60
    )
    closures = guest.box.wait_for(
        "a CLOSE_CODE entry", lambda: guest.box.journal(f"CLOSE_CODE={CLOSE_CODE}"), within=60
    )
    assert {e["_SYSTEMD_UNIT"] for e in tools + closures} == {f"{UNIT}.service"}
    assert all(
        API_KEY not in json.dumps(e) for e in guest.box.journal(f"_SYSTEMD_UNIT={UNIT}.service")
    )


def test_the_watchdog_restarts_a_stopped_daemon(guest: Guest) -> None:
    before = int(guest.unit("NRestarts")["NRestarts"])
    guest.box.run(f"systemctl kill --kill-whom=main -s SIGSTOP {UNIT}")
    # WatchdogSec=30s, RestartSec=5s, then the new process's start-up.
    guest.box.wait_for(
        "a restart after the watchdog fired",
        lambda: (
            int(guest.unit("NRestarts")["NRestarts"]) > before
            and guest.unit("ActiveState")["ActiveState"] == "active"
        ),
        within=90,
    )
    about = guest.box.journal("-u", f"{UNIT}.service")
    assert any("atchdog timeout" in str(e.get("MESSAGE", "")) for e in about)


def test_the_installed_unit_rates_at_most_2(guest: Guest) -> None:
    # --threshold= counts tenths: 20 is an exposure of 2.0.
    result = guest.box.run(
        f"systemd-analyze security --no-pager --threshold=20 {UNIT}.service", check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [exposure] = re.findall(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert float(exposure) <= 2.0
    print(f"{guest.suite}: exposure {exposure}")


def test_a_bad_config_exits_78_and_is_not_restarted(guest: Guest) -> None:
    # Last: it leaves the unit failed.
    guest.box.run(f"cat > {CONF} <<'EOF'\n{BAD_CONFIG}EOF")
    guest.box.run(f"systemctl restart {UNIT}", timeout=120, check=False)
    state = guest.box.wait_for(
        "the unit failed",
        lambda: (
            (s := guest.unit("ActiveState", "Result", "ExecMainStatus", "NRestarts"))["ActiveState"]
            == "failed"
            and s
        ),
        within=60,
    )
    assert (state["Result"], state["ExecMainStatus"]) == ("exit-code", "78")
    # A manual restart resets the count; a restart by systemd would raise it.
    assert state["NRestarts"] == "0"
    # Watch past RestartSec=5s: a restart would have come by then.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        now = guest.unit("ActiveState", "NRestarts")
        assert now == {"ActiveState": "failed", "NRestarts": "0"}
        time.sleep(0.5)
    errors = guest.box.journal(f"_SYSTEMD_UNIT={UNIT}.service", "PRIORITY=3")
    assert any("button.pin" in e.get("MESSAGE", "") for e in errors)
