# gnomon — every target creates .venv and installs what it needs on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080
# Security scanners live in their own virtualenv: checkov pulls many dependencies that must not
# pin the project's own (aws-sam-translator gives cfn-lint the real SAM transform).
SCAN := .venv-scan
SCAN_STAMP := $(SCAN)/.installed
SCAN_TOOLS := 'checkov==3.3.30' 'bandit==1.9.4' 'pip-audit==2.10.1' 'cfn-lint==1.58.0' 'aws-sam-translator==1.115.0'

.PHONY: dev test lint scan types unit bench bench-console screenshots package clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

$(SCAN_STAMP): Makefile
	test -x $(SCAN)/bin/python || $(PY) -m venv $(SCAN)
	$(SCAN)/bin/pip install -q --upgrade pip
	$(SCAN)/bin/pip install -q $(SCAN_TOOLS)
	touch $(SCAN_STAMP)

dev: $(STAMP)
	exec $(BIN)/gnomon dev --port $(PORT)

lint: $(STAMP) scan
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# cfn-lint (with the SAM transform) and checkov on the template (suppressions are justified in
# the template's Metadata.checkov), bandit on the code (.bandit.yaml), pip-audit on the
# dependencies (skipped, visibly, when its vulnerability service does not answer).
scan: $(STAMP) $(SCAN_STAMP)
	$(SCAN)/bin/cfn-lint template.yaml
	BC_SKIP_MAPPING=TRUE $(SCAN)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	$(SCAN)/bin/bandit -q -c .bandit.yaml -r shared functions
	$(SCAN)/bin/python .ci/pip_audit.py $(BIN)/python $(SCAN)/bin/pip-audit

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
	rm -rf $(VENV) $(SCAN) .aws-sam
