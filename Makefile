# Every target sets up what it needs on a fresh Debian 12 machine: system packages, then .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What a device needs to run and to build its compiled modules, and nothing more:
# pyalsaaudio builds against libasound2-dev, systemd-python against libsystemd-dev through
# pkg-config, both with a C compiler (gcc, libc6-dev: not all of build-essential); swig builds
# lgpio, the pin driver, where PyPI has no wheel for this Python and machine; the venv needs
# python3-venv and the headers python3-dev. `make install` installs these alone.
RUNTIME_PACKAGES := gcc libc6-dev libasound2-dev libsystemd-dev pkg-config swig python3-venv \
	python3-dev
# What only the tests, the demo and the bench need: espeak-ng and sox make speech fixtures;
# mosquitto is the real broker the tests start (Debian's package also enables and starts it,
# one more reason it stays off a device); alsa-utils for manual checks; systemd brings
# systemd-analyze and journald for the unit and journal tests.
TEST_PACKAGES := espeak-ng sox mosquitto alsa-utils systemd
# What `make test-system` and `make test-arm64` need on the host: Debian root file systems,
# a booted systemd in a container, aarch64 emulation.
SYSTEM_TEST_PACKAGES := debootstrap systemd-container qemu-user-static binfmt-support
# PYPI=1 below: lgpio's source build links its own copy of the lg C library only then (else it
# wants a system liblgpio, which plain Debian does not have).

# $(call apt-install,PACKAGES): apt-get install whichever of PACKAGES are missing.
define apt-install
	@missing=""; \
	for p in $(1); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		echo "installing system packages:$$missing"; \
		$$sudo apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

.PHONY: test demo bench fuzz install lint typecheck pytest runtime-packages system-packages \
	system-test-packages venv lock clean test-system test-arm64

runtime-packages:
	$(call apt-install,$(RUNTIME_PACKAGES))

system-packages: runtime-packages
	$(call apt-install,$(TEST_PACKAGES))

system-test-packages:
	$(call apt-install,$(SYSTEM_TEST_PACKAGES))

$(BIN)/.installed: pyproject.toml requirements.lock | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	PYPI=1 $(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

venv: system-packages $(BIN)/.installed

lint: venv
	$(BIN)/ruff check device services tests bench
	$(BIN)/ruff format --check device services tests bench

typecheck: venv
	$(BIN)/mypy

# pytest exits 5 when it collected nothing; that is a failure here, like any other non-zero.
pytest: venv
	$(BIN)/pytest

test: lint typecheck pytest

demo: venv
	$(BIN)/pi-live-voice demo

# The benchmarks against the local stand-in (not part of test): writes bench/report.md,
# bench/report.json and the plots next to them, from scratch.
bench: venv
	$(BIN)/python -m bench.run --size full

# The long run of the boundary generators (make test runs a few of each): hostile configs
# through check-config, malformed frames through the boundary and through the real SDK
# against the stand-in's hostile mode. Ends with "N tried, M mishandled"; fails if M > 0.
fuzz: venv
	$(BIN)/python -m tests.fuzz --configs 1000 --frames 2000 --sdk-frames 40

# The daemon as a systemd service: a venv under PREFIX, the unit, the config (an existing one
# is kept) and a root-only credentials directory with an empty key file. DESTDIR stages it all
# under another root (packaging, tests). VENV_SRC copies an existing venv instead of building
# one with the pinned requirements (the tests pass .venv; an editable install in it keeps
# pointing at this checkout, so a device uses the default). Scripts name their interpreter by
# absolute path, so they are pointed at where the venv will run; the service's throw-away user
# must be able to read it all.
PREFIX ?= /opt/pi-live-voice
VENV_SRC ?=
CONF_DIR := /etc/pi-live-voice
UNIT_DIR := /etc/systemd/system
# The unit's SupplementaryGroups=gpio needs a gpio group owning /dev/gpiochip*. Raspberry Pi
# OS has both (its own 99-com.rules gives the group the chips), so where a gpio group exists
# and our rule is not already there, nothing is added: a second rule would fight theirs.
# Elsewhere (plain Debian) the group is created and the rule installed, and a running udev
# applies it to the chips at once. Under DESTDIR the rule is only staged and no group is
# created: groupadd would change the build host, not the target (a package's postinst does it).
UDEV_RULES_DIR := /etc/udev/rules.d
GPIO_RULE := 60-pi-live-voice-gpio.rules
INSTALL_VENV = $(abspath $(DESTDIR)$(PREFIX))/venv

install: $(if $(VENV_SRC),,runtime-packages)
	rm -rf "$(INSTALL_VENV).new"
	mkdir -p "$(dir $(INSTALL_VENV))"
	if [ -n "$(VENV_SRC)" ]; then \
		cp -a "$(VENV_SRC)" "$(INSTALL_VENV).new"; \
	else \
		$(PYTHON) -m venv "$(INSTALL_VENV).new"; \
		PYPI=1 "$(INSTALL_VENV).new/bin/pip" install -q -c requirements.lock .; \
	fi
	"$(INSTALL_VENV).new/bin/python" -c 'import lgpio' || \
		{ echo "make install: the venv has no lgpio, the pin driver: see above" >&2; exit 1; }
	from="$(if $(VENV_SRC),$(abspath $(VENV_SRC)),$(INSTALL_VENV).new)"; \
	grep -rlIF "$$from" "$(INSTALL_VENV).new/bin" | xargs -r sed -i "s|$$from|$(PREFIX)/venv|g"
	chmod -R go+rX,go-w "$(INSTALL_VENV).new"
	rm -rf "$(INSTALL_VENV)"
	mv "$(INSTALL_VENV).new" "$(INSTALL_VENV)"
	install -d -m 0755 "$(DESTDIR)$(UNIT_DIR)" "$(DESTDIR)$(CONF_DIR)"
	sed 's|/opt/pi-live-voice|$(PREFIX)|g' systemd/pi-live-voice.service \
		> "$(DESTDIR)$(UNIT_DIR)/pi-live-voice.service"
	chmod 0644 "$(DESTDIR)$(UNIT_DIR)/pi-live-voice.service"
	[ -e "$(DESTDIR)$(CONF_DIR)/config.toml" ] || \
		install -m 0644 systemd/config.example.toml "$(DESTDIR)$(CONF_DIR)/config.toml"
	install -d -m 0700 "$(DESTDIR)$(CONF_DIR)/credentials"
	[ -e "$(DESTDIR)$(CONF_DIR)/credentials/gemini-api-key" ] || \
		install -m 0600 /dev/null "$(DESTDIR)$(CONF_DIR)/credentials/gemini-api-key"
	if [ -n "$(DESTDIR)" ]; then \
		install -D -m 0644 systemd/$(GPIO_RULE) "$(DESTDIR)$(UDEV_RULES_DIR)/$(GPIO_RULE)"; \
	elif ! getent group gpio >/dev/null || [ -e "$(UDEV_RULES_DIR)/$(GPIO_RULE)" ]; then \
		getent group gpio >/dev/null || groupadd --system gpio; \
		install -D -m 0644 systemd/$(GPIO_RULE) "$(UDEV_RULES_DIR)/$(GPIO_RULE)"; \
		if [ -S /run/udev/control ]; then \
			udevadm control --reload && udevadm trigger --subsystem-match=gpio --action=change; \
		fi; \
	fi
	@echo
	@echo "Installed. Then, as root:"
	@echo "  # the API key, as a root-only credential (never in config.toml):"
	@echo "  systemd-ask-password -n 'Gemini API key:' > $(CONF_DIR)/credentials/gemini-api-key"
	@echo "  # or encrypted at rest with this machine's key (then a drop-in, see README):"
	@echo "  systemd-ask-password -n 'Gemini API key:' | systemd-creds encrypt --name=gemini-api-key - $(CONF_DIR)/credentials/gemini-api-key.cred"
	@echo "  $(PREFIX)/venv/bin/pi-live-voice check-config --config $(CONF_DIR)/config.toml"
	@echo "  systemctl daemon-reload && systemctl enable --now pi-live-voice"

# Regenerates the lock from a fresh resolution of pyproject.toml.
lock: system-packages
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^pi-live-voice' > requirements.lock
	rm -rf .lock-venv

# The system checks (as root; not part of `test`): `make install` in fresh bookworm and trixie
# rootfs booted with systemd-nspawn, and `make test` in a trixie chroot; `make install` and the
# demo in an arm64 trixie rootfs under qemu. Root file systems, apt downloads and pip wheels are kept
# between runs under PLV_TEST_CACHE (default /var/cache/pi-live-voice-test).
SYSTEM_PYTEST = $(BIN)/pytest -p no:cacheprovider -o python_files='check_*.py' -o timeout=7200 -s

test-system: venv system-test-packages
	$(SYSTEM_PYTEST) tests/system/check_booted.py tests/system/check_trixie_suite.py

test-arm64: venv system-test-packages
	$(SYSTEM_PYTEST) tests/system/check_arm64.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
