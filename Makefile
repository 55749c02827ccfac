# fastmicro — the verbs. `make help` lists them.
SHELL := bash
.DEFAULT_GOAL := help
# Expanded when a recipe uses them, so the Docker verbs (up, down, logs, ps) never install uv.
UV = $(shell ./scripts/ensure-uv.sh)
RUN = $(UV) run --frozen
COMPOSE ?= docker compose
REPEAT ?= 1

.PHONY: help install servers dev test e2e faults fuzz bench lint lint-infra fmt migrate generate service up down logs ps

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install:  ## install the workspace (uv, Python deps) from uv.lock
	$(UV) sync --locked

servers: install  ## make sure the tests' PostgreSQL and RabbitMQ answer (starting local ones if needed)
	$(RUN) python tools/devservers.py

# RELOAD=0: no restart on save; INSTALL=1: install missing servers (apt, brew); KEEP=1: leave its containers running.
dev: install  ## run the stack locally: servers, migrations, topology, then every service, reloaded on save (Ctrl-C stops all)
	$(RUN) python tools/devstack.py $(if $(filter 0,$(RELOAD)),,--reload) $(if $(INSTALL),--install) $(if $(KEEP),--keep-servers)

migrate: install  ## create the service databases if missing and apply their migrations
	$(RUN) python tools/devstack.py --migrate-only $(if $(INSTALL),--install) $(if $(KEEP),--keep-servers)

test: install servers  ## every test (unit, integration, end-to-end) against real PostgreSQL and RabbitMQ
	$(RUN) pytest

fuzz: install servers  ## schemathesis against every service's OpenAPI document: no server error, nothing undocumented (tools/fuzz.toml)
	$(RUN) python tools/fuzz.py $(ARGS)

bench: install servers  ## every hot path against its raw twin, results in bench/ (SMOKE=1: every path once, in seconds)
	$(RUN) python -m bench $(if $(SMOKE),--smoke) $(ARGS)

lint: install lint-infra  ## ruff, formatting, mypy (strict), the lock file, the generated files (and the event schemas' compatibility), and lint-infra
	$(RUN) python tools/workspace.py --check
	$(RUN) python tools/events.py --check
	$(RUN) check-jsonschema --schemafile tools/schemas/asyncapi-3.0.0.json docs/asyncapi.yaml
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs services tools tests-e2e deploy bench
	$(RUN) mypy tests-faults  # alone: its conftest.py and tests-e2e's are both top-level `conftest`
	$(UV) lock --check

lint-infra: install  ## Dockerfile, compose file, Prometheus config and alert rules, Kubernetes manifests and CI workflow, validated offline
	$(RUN) python deploy/lint_infra.py

generate: install  ## rewrite what lists the services (compose, k8s, ...) from their manifests, and docs/asyncapi.yaml and the event schemas from the code
	$(RUN) python tools/workspace.py
	$(RUN) python tools/events.py

service: install  ## a new service: `make service NAME=billing` (templates/service, then every list of services)
	@test -n "$(NAME)" || { echo "usage: make service NAME=<name>"; exit 2; }
	PATH="$$(dirname $(UV)):$$PATH" $(RUN) python tools/new_service.py $(NAME)
	$(UV) sync --locked
	$(RUN) python tools/events.py  # its subscriptions and events, once it is installed

fmt: install  ## format and auto-fix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

e2e: install servers  ## the end-to-end suite alone: the stack as `make dev` runs it, driven over HTTP
	$(RUN) pytest tests-e2e

faults: install servers  ## the fault-injection suite alone, with its figures (REPEAT=10: ten runs, stop at a failure)
	@for run in $$(seq $(REPEAT)); do \
	  started=$$SECONDS; \
	  $(RUN) pytest tests-faults $(ARGS) || { echo "faults: run $$run of $(REPEAT) FAILED"; exit 1; }; \
	  echo "faults: run $$run of $(REPEAT) passed in $$((SECONDS - started)) s"; \
	done

up: .env  ## the whole stack in Docker: build, migrate, start, wait until healthy, print the URLs
	$(COMPOSE) up -d --build --wait
	@echo
	@echo 'fastmicro is up:'
	@# generated: services (tools/workspace.py, from tools/banner.py: `make generate`)
	@echo '  users          http://localhost:8001  (docs: http://localhost:8001/docs)'
	@echo '  orders         http://localhost:8002  (docs: http://localhost:8002/docs)'
	@echo '  notifications  http://localhost:8003  (docs: http://localhost:8003/docs)'
	@echo '  mail           Mailpit http://localhost:8025 (every mail the stack sends)'
	@echo '  RabbitMQ UI    http://localhost:15672 (RABBITMQ_USER / RABBITMQ_PASSWORD in .env)'
	@echo '  traces         Jaeger http://localhost:16686'
	@echo '  dashboards     Grafana http://localhost:3000 (the fastmicro dashboard)'
	@echo '  metrics        Prometheus http://localhost:9090 (every API and worker, the alert rules)'
	@echo '  logs           make logs (make logs ARGS=orders for one service); make ps for their health'
	@echo '  stop           make down (the data volumes stay)'
	@# end generated

down:  ## stop the Docker stack; its data volumes stay (`make down ARGS=--volumes` removes them)
	$(COMPOSE) down $(ARGS)

logs:  ## follow the Docker stack's logs (`make logs ARGS=orders` for one service)
	$(COMPOSE) logs --follow --tail=200 $(ARGS)

ps:  ## the Docker stack's containers, their state and health
	$(COMPOSE) ps --all

.env:  # the first `make up` starts from the example (development) settings; .env is never committed
	cp .env.example .env
	@echo "created .env from .env.example: change every secret before ENVIRONMENT=production"
