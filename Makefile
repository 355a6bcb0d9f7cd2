# Quick start: `make demo` runs the whole stack; `make test` runs the tests. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_MODEL := $(abspath ../shared/models/yolo11n_int8_openvino_model)

# No model hub is reachable here: use the shared OpenVINO export when the variable is unset and it exists.
ifeq ($(origin GRIDWATCH_MODEL),undefined)
ifneq ($(wildcard $(SHARED_MODEL)),)
export GRIDWATCH_MODEL := $(SHARED_MODEL)
endif
endif

.PHONY: setup demo test bench bench-edge model-litter clean mosquitto

setup: $(VENV)/.installed mosquitto

$(VENV)/.installed: pyproject.toml
	@# Debian's own python3 creates virtualenvs only once python3-venv is installed
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	touch $@

mosquitto:
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ] || ! command -v mosquitto_sub >/dev/null; then \
		echo "installing mosquitto"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto mosquitto-clients; \
	fi

demo: setup
	$(BIN)/gridwatch demo $(DEMO_ARGS)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/ingest_bench.py

bench-edge: setup
	$(BIN)/python bench/edge_bench.py $(BENCH_ARGS)

# A litter model from the shared street-garbage photos (CPU: tens of minutes; EPOCHS=20 for a first try).
EPOCHS ?= 50
model-litter: setup
	$(BIN)/gridwatch models train --data ../shared/datasets/street-garbage --from ../shared/models/yolo11n_coco.pt \
		--classes garbage --epochs $(EPOCHS) --out models/runs/litter --export openvino,onnx

clean:
	rm -rf .demo .demo-media .pytest_cache
