# Everything runs from a virtual environment in .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install up up-detached down status test unit clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

install: $(BIN)/.installed

## Start the whole local stack in the foreground (Ctrl-C stops it).
up: install
	$(BIN)/clickstream up

up-detached: install
	$(BIN)/clickstream up --detach

down: install
	$(BIN)/clickstream down

status: install
	$(BIN)/clickstream status

## Unit and integration tests (the fixtures start a real Tansu broker and SeaweedFS).
test: install
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q -m "not integration"

clean:
	rm -rf $(VENV) .clickstream .pytest_cache test-artifacts
