# Every target sets up what it needs on a fresh Debian 12 machine: system packages, then .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# libasound2-dev, libsystemd-dev and pkg-config build pyalsaaudio and systemd-python;
# espeak-ng and sox make speech fixtures; mosquitto is the real broker the tests start;
# systemd brings systemd-analyze and journald for the unit and journal tests.
APT_PACKAGES := build-essential libasound2-dev libsystemd-dev pkg-config espeak-ng sox \
	mosquitto alsa-utils systemd python3-venv python3-dev

.PHONY: test demo lint typecheck pytest system-packages venv lock clean

system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
		echo "installing system packages:$$missing"; \
		$$sudo apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BIN)/.installed: pyproject.toml requirements.lock | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

venv: system-packages $(BIN)/.installed

lint: venv
	$(BIN)/ruff check device services tests
	$(BIN)/ruff format --check device services tests

typecheck: venv
	$(BIN)/mypy

# pytest exits 5 when it collected nothing; that is a failure here, like any other non-zero.
pytest: venv
	$(BIN)/pytest

test: lint typecheck pytest

demo: venv
	$(BIN)/pi-live-voice demo

# Regenerates the lock from a fresh resolution of pyproject.toml.
lock: system-packages
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^pi-live-voice' > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
