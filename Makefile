# Passerelle — `make help` lists the targets. Everything installs itself:
# a .venv with pinned packages, Kafka's jars in ~/.cache/passerelle.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PASSERELLE := $(BIN)/passerelle

.PHONY: picture help install kafka-jars kafka-up kafka-down kafka-status kafka-logs \
        kafka-cluster-up kafka-cluster-down topics run bench bench-full bench-scale test test-unit lint format clean \
        prometheus deploy-rules kafka-up-secure kafka-down-secure test-faults

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(INSTALLED) ## create .venv with the pinned dependencies (constraints.txt)

$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is needed: set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

kafka-jars: install ## fetch Kafka's jars from Maven Central (once; cached)
	$(PASSERELLE) kafka fetch

kafka-up: install ## start the local single-node Kafka (127.0.0.1:9092); harmless if up
	$(PASSERELLE) kafka up

kafka-down: install ## stop the local single-node Kafka (by its pid)
	$(PASSERELLE) kafka down

kafka-status: install ## show which local Kafka nodes run
	$(PASSERELLE) kafka status; $(PASSERELLE) kafka status --cluster

kafka-logs: install ## the last broker log lines of the single node
	$(PASSERELLE) kafka logs

kafka-up-secure: install ## start the secure node (SCRAM-SHA-512, ACLs enforced; 127.0.0.1:9292)
	$(PASSERELLE) kafka up --secure

kafka-down-secure: install ## stop the secure node
	$(PASSERELLE) kafka down --secure

kafka-cluster-up: install ## start the three-node cluster (19092/19102/19112, RF 3)
	$(PASSERELLE) kafka up --cluster

kafka-cluster-down: install ## stop the three-node cluster
	$(PASSERELLE) kafka down --cluster

topics: kafka-up ## create the catalog's topics (and BANKS="a b" ingest topics)
	$(PASSERELLE) topics create $(foreach b,$(BANKS),--bank $(b))

DEMO_BANKS := banque-alpine credit-breton thames-bank

# The demo, the tests and the bench run workers on a laptop: they may use the public
# development hash key. A deployment sets PASSERELLE_HASH_KEY(_FILE) instead.
run bench bench-full bench-scale test test-unit test-faults: export PASSERELLE_ALLOW_DEV_HASH_KEY ?= on

run: kafka-up ## the main job: the pipeline on a simulated bank feed for a minute, delivered to a local Send API, reconciliation, then customers asking in the chat
	$(PASSERELLE) topics create $(foreach b,$(DEMO_BANKS),--bank $(b))
	$(PASSERELLE) demo --seconds 60 --rate 100

bench: install ## the pipeline against bare aiokafka: throughput ratio, latency, state; a delivery worker at 0 and 50 ms API latency (minutes)
	$(PASSERELLE) bench

bench-full: install ## make bench plus the state at 1 000 000 accounts, then make bench-scale (long)
	$(PASSERELLE) bench --full
	$(PASSERELLE) bench --scale

bench-scale: install ## three brokers; 1, 2 and 4 workers with k = 0 and 1 standby: CPU and changelog reads per transaction, p99, RSS, disk; a kill -9 failover, after a warm-up phase (~11 min)
	$(PASSERELLE) bench --scale

test: install prometheus ## every test: unit, and integration on a real broker the tests start themselves
	$(BIN)/pytest --durations=8

test-faults: install ## fault suite: three brokers, two workers (four in one), 18 scenarios (~35 min; CI runs it after `make test`)
	$(BIN)/pytest tests/faults --durations=8 -s

test-unit: install prometheus ## the tests that need no broker (promtool checks included)
	$(BIN)/pytest -m "not kafka"

prometheus: ## install Prometheus and promtool from Debian's packages, if missing (the SRE kit's tests)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; } || \
	  { echo "could not install Debian's prometheus package (needs root and Debian's registry)"; exit 1; }; }

picture: install ## draw the README's picture (docs/picture/architecture.svg) from its .dot; installs Graphviz if missing
	@command -v dot >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends graphviz >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends graphviz >/dev/null; } || \
	  { echo "could not install Debian's graphviz package (needs root and Debian's registry)"; exit 1; }; }
	$(BIN)/python docs/picture/draw.py

deploy-rules: install ## regenerate deploy/k8s/prometheusrule.yaml from deploy/prometheus/rules.yml
	$(BIN)/python deploy/k8s/prometheusrule.py

lint: install ## ruff and mypy; never rewrites a file
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## rewrite files with ruff's formatter and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove .venv and .run (stop the brokers first: make kafka-down kafka-cluster-down)
	rm -rf $(VENV) .run
