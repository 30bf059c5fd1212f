# One entry point for every workflow; each target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
ENV ?= dev
ENVS := $(basename $(notdir $(wildcard config/*.yaml)))

.PHONY: install services synth test deploy diff demo bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt functions/trigger/requirements.txt functions/sync_worker/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

## services: redis-server and mosquitto binaries for the tests and the demo (Debian packages).
services:
	@bash scripts/ensure-services.sh

## synth: CloudFormation for every environment into cdk.out/<env>/, then a resource count per stack.
synth: install
	@for env in $(ENVS); do \
	  $(CDK) synth --quiet -c env=$$env --output cdk.out/$$env > /dev/null || exit 1; \
	done
	@$(PY) -m stacks.report cdk.out $(ENVS)

## test: the whole suite (unit, infra, integration, reliability).
test: install services
	$(PY) -m pytest

## deploy: cdk deploy every stack of ENV (needs AWS credentials and Docker for the worker image).
deploy: install
	$(CDK) deploy --all -c env=$(ENV) --output cdk.out/$(ENV) --require-approval broadening

diff: install
	$(CDK) diff --all -c env=$(ENV) --output cdk.out/$(ENV)

clean:
	rm -rf cdk.out build .pytest_cache
