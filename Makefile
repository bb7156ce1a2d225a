# osrewind: the two Quickstart commands and the usual chores. BPF needs root: as root the steps run
# directly, as another user the steps that need it go through sudo.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup demo test lint bench clean

setup:
	$(SUDO) bash scripts/setup.sh --dev

demo: setup
	$(SUDO) $(VENV)/bin/osrewind demo

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(SUDO) $(PY) -m pytest -q -n 2 --dist loadgroup

bench: setup
	$(SUDO) $(PY) bench/record_rate.py

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
