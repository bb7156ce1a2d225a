# osrewind: the two Quickstart commands and the usual chores. Run as root (sudo make ...).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

setup:
	bash scripts/setup.sh --dev

demo: setup
	$(VENV)/bin/osrewind demo

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/record_rate.py

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
