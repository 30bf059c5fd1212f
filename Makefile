# One entry point for every workflow; each target installs what it needs first.
SHELL := /bin/bash
#: One Python for the tests and the worker image (functions/sync_worker/Dockerfile): bump them
#: together, then `make lock`.
PYTHON_VERSION := 3.11
#: The trigger Lambda's runtime (stacks/trigger.py): 3.12, on Amazon Linux 2023. Lambda's python3.11
#: runs on Amazon Linux 2, whose runtimes Lambda lists for deprecation in 2026-2027 (function
#: creation blocked after that); the handler is plain Python and its bundle is locked for 3.12.
LAMBDA_PYTHON_VERSION := 3.12
PYTHON ?= python$(PYTHON_VERSION)
#: pip itself is pinned too, so two installs of the same locks run the same installer.
PIP_VERSION := 26.3
VENV := .venv
PY := $(VENV)/bin/python
RUFF := $(VENV)/bin/ruff
MYPY := $(VENV)/bin/mypy
CDK := node_modules/.bin/cdk
ENV ?= dev
ENVS := $(basename $(notdir $(wildcard config/*.yaml)))

.PHONY: install lock services fmt lint typecheck test-fast check synth cost test deploy destroy diff demo bench bench-peers bench-rss bench-wan clean

# The development venv installs requirements-dev.lock: every distribution pinned with its hashes
# (`make lock` writes it from requirements-dev.txt), nothing resolved at install time.
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

## checkov in its own venv: it pins boto3/packaging versions that conflict with ours.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.lock
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements-checkov.lock
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

## services: redis-server and mosquitto binaries for the tests and the demo (Debian packages).
services:
	@bash scripts/ensure-services.sh

## lock: resolve each runtime's requirements*.txt into a lock with hashes, for Python $(PYTHON_VERSION)
## (the Lambda's for $(LAMBDA_PYTHON_VERSION)):
## requirements-dev.lock (this venv, any platform), functions/sync_worker/requirements.lock (the
## worker image, arm64 or x86_64), functions/trigger/requirements.lock (the Lambda: ARM64) and
## bench/requirements.lock (the WAN bench's extras, within the dev venv's pins). Pins
## already in a lock are kept; `make lock UPGRADE=1` moves every one to the newest allowed.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
LOCK := $(UV_COMPILE) --python-version $(PYTHON_VERSION)
lock: $(VENV)/.installed
	$(LOCK) --universal requirements-dev.txt -o requirements-dev.lock
	$(LOCK) --universal functions/sync_worker/requirements.txt -o functions/sync_worker/requirements.lock
	$(UV_COMPILE) --python-version $(LAMBDA_PYTHON_VERSION) --python-platform aarch64-manylinux2014 \
	  functions/trigger/requirements.txt -o functions/trigger/requirements.lock
	$(LOCK) --universal bench/requirements.txt -c requirements-dev.lock -o bench/requirements.lock
	$(LOCK) --universal requirements-checkov.txt -o requirements-checkov.lock

## fmt: format the code and sort its imports (ruff; the rules are in pyproject.toml).
fmt: install
	$(RUFF) check --select I --fix --quiet .
	$(RUFF) format .

## lint: ruff's lint rules; 0 findings, every `# noqa` names its rule and why.
lint: install
	$(RUFF) check .

## typecheck: mypy with the pydantic plugin; strict on functions/ and config/ (pyproject.toml).
typecheck: install
	$(MYPY)

## test-fast: the tests that start no process and open no socket (marked neither integration nor
## infra; tests/conftest.py enforces it), in seconds: no services needed.
test-fast: install
	$(PY) -m pytest --fast -q --snapshot-warn-unused

## check: formatting (check only), lint, types and the fast tests; CI runs it before the suite.
check: install
	$(RUFF) format --check .
	$(RUFF) check .
	$(MYPY)
	$(PY) -m pytest --fast -q --snapshot-warn-unused

## synth: CloudFormation for every environment into cdk.out/<env>/, then a resource count per stack.
## Environments synthesize in parallel (one CDK app process each); a failure prints that env's log.
synth: install
	@mkdir -p cdk.out; pids=""; \
	for env in $(ENVS); do \
	  ( $(CDK) synth --quiet -c env=$$env --output cdk.out/$$env > cdk.out/synth-$$env.log 2>&1 \
	    || { echo "cdk synth -c env=$$env failed:"; cat cdk.out/synth-$$env.log; exit 1; } ) & pids="$$pids $$!"; \
	done; rc=0; for pid in $$pids; do wait $$pid || rc=1; done; exit $$rc
	@$(PY) -m infra.report cdk.out $(ENVS)

## cost: what ENV costs a month at on-demand list prices, read from cdk.out/ENV after a synth
## (rates and usage assumptions: c2c_sync/cost/prices.yaml). COST_ARGS="--json" or "--region eu-central-1".
cost: synth
	@$(PY) -m c2c_sync cost --env $(ENV) $(COST_ARGS)

## test: the whole suite (unit, infra, integration, reliability), on two pytest-xdist workers: most
## integration tests wait on processes and sockets, so two workers keep both cores busy. loadfile keeps
## a module's tests on one worker (module fixtures start once; a test's order within its file holds).
test: install services
	$(PY) -m pytest -n 2 --dist loadfile

## deploy: `c2c-sync preflight` (endpoints, secrets, account/region, Docker arm64, alarm subscribers,
## asset-repository scan on push), then cdk deploy every stack of ENV (AWS credentials and Docker needed).
deploy: install
	$(PY) -m c2c_sync preflight --env $(ENV)
	$(CDK) deploy --all -c env=$(ENV) --output cdk.out/$(ENV) --require-approval broadening

## destroy: delete every stack of ENV. With retain_data (prod) the stateful stacks are termination-
## protected and the cache, queues, key and secret are retained: see the README's Teardown.
destroy: install
	$(CDK) destroy --all -c env=$(ENV) --output cdk.out/$(ENV)

diff: install
	$(CDK) diff --all -c env=$(ENV) --output cdk.out/$(ENV)

## demo: the whole system on this machine (redis, mosquitto, moto, vendor simulator, worker, trigger), about a
## minute; exits non-zero if a reading is lost. VENDOR=fusionsolar|solaredge reads that vendor's mock (vendor_mocks/)
## through its shipped definition instead of the simulator. DEMO_ARGS="--stations 50 --cycles 3 ..." ; MQTT_URL /
## REDIS_URL point it at external services (see `$(PY) -m c2c_sync demo --help`).
VENDOR ?= simulator
demo: install services
	$(PY) -m c2c_sync demo --vendor $(VENDOR) $(DEMO_ARGS)

## bench: the benchmarks of bench/RESULTS.md (a few minutes; record the figures there by hand).
bench: install services
	C2C_LOG_LEVEL=ERROR $(PY) bench/worker_bench.py cycle --stations 10000 --latency-ms 50 --concurrency 32
	C2C_LOG_LEVEL=ERROR $(PY) bench/worker_bench.py batched --stations 10000 --latency-ms 50 --concurrency 32
	C2C_LOG_LEVEL=ERROR $(PY) bench/worker_bench.py publish --readings 30000 --concurrency 32 --with-simulator
	$(PY) bench/simulator_throughput.py --seconds 8

## bench-peers: the worker against a Node-RED 5 flow on this machine (first use installs Node.js 22 and
## Node-RED from npm into bench/peers/node_modules): 1,000 stations at 0 ms (CPU per station) and 50 ms,
## then Node-RED without a bound on its requests in flight (--nodered-lanes 0). At 0 ms also the
## Python floors (bench/peers/python_floor.py): what the least Python spends on the same job.
bench-peers: install services
	$(PY) bench/peers/peers_bench.py --stations 1000 --latency-ms 0 --concurrency 32 --rounds 7 --with-floor
	$(PY) bench/peers/peers_bench.py --stations 1000 --latency-ms 50 --concurrency 32 --rounds 7
	$(PY) bench/peers/peers_bench.py --stations 1000 --latency-ms 50 --concurrency 32 --rounds 7 --nodered-lanes 0

## bench-rss: the worker's RSS over 1,000 short cycles after 100 of warm-up (about 3 minutes).
bench-rss: install services
	$(PY) bench/rss_bench.py --cycles 1000 --warmup 100

## bench-wan: worker vs per-run function vs Node-RED with the broker (TLS) and the vendor behind a
## delayed link, each in its own network namespace (needs root); plots bench/wan_cycles*.png. Then the
## same with an in-flight window of 100 for the worker and the function, and with Mosquitto's
## set_tcp_nodelay (its PUBACKs not held back by Nagle).
bench-wan: install services $(VENV)/.bench-installed
	bash bench/wan/ensure-tools.sh
	$(PY) bench/wan/wan_bench.py
	$(PY) bench/wan/wan_bench.py --max-inflight 100 --plot bench/wan_cycles_inflight100.png \
	  --result bench/results/wan_inflight100.json
	$(PY) bench/wan/wan_bench.py --broker-nodelay --plot bench/wan_cycles_nodelay.png \
	  --result bench/results/wan_nodelay.json

# The WAN bench's extras on top of the dev venv, locked with hashes like it (constrained to its pins).
$(VENV)/.bench-installed: bench/requirements.lock $(VENV)/.installed
	$(PY) -m pip install --quiet --require-hashes --no-deps -r bench/requirements.lock
	touch $@

## chaos: the worker under fault injection (bench/chaos.py, about 25 min): broker kills, Redis lost,
## vendor chaos, SIGTERM/SIGKILL mid-cycle, signal storm, poison signals, two workers, a 300-cycle soak
## and a 20,000-body fuzz; prints one table (record it in bench/RESULTS.md). CHAOS_ARGS="--only soak".
.PHONY: chaos
chaos: install services
	$(PY) bench/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf cdk.out build .pytest_cache
