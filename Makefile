# gnomon — every target creates .venv and installs what it needs on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.PHONY: dev test lint types unit bench bench-console screenshots package clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	exec $(BIN)/gnomon dev --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests

test: lint types
	$(BIN)/pytest -q -n 2 tests

bench: $(STAMP)
	$(BIN)/python -m bench

bench-console: $(STAMP)
	$(BIN)/python -m bench console

# PNGs of the console's main pages for the README (needs: apt-get install -y chromium chromium-driver)
screenshots: $(STAMP)
	$(BIN)/python -m bench.screenshots

package: $(STAMP)
	@command -v sam >/dev/null || { echo "install aws-sam-cli in its own virtualenv (pipx install aws-sam-cli)"; exit 1; }
	PATH="$$(pyenv prefix 3.12 2>/dev/null)/bin:$$PATH" sam build --template template.yaml

clean:
	rm -rf $(VENV) .aws-sam
