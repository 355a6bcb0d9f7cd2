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

.PHONY: browser opencv-libs setup demo test bench bench-server bench-console bench-scale bench-edge bench-litter bench-outbox model-litter clean mosquitto postgresql

setup: $(VENV)/.installed mosquitto opencv-libs

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

# OpenCV's wheel (opencv-python, which ultralytics also asks for) loads libGL and GLib, which a minimal Debian lacks.
opencv-libs:
	@if ! ldconfig -p | grep -q "libGL.so.1 " || ! ldconfig -p | grep -q "libglib-2.0.so.0 "; then \
		echo "installing libgl1 and libglib2.0-0 for OpenCV"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libgl1 libglib2.0-0; \
	fi

# The tests run the server on SQLite and on a real PostgreSQL server they start themselves from Debian's package.
postgresql:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing postgresql"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	fi

# The console's browser tests drive Debian's Chromium (Playwright's own download is unreachable offline); a small
# CJK font draws the Chinese interface.
browser:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then \
		echo "installing chromium and a CJK font"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-wqy-microhei; \
	fi

demo: setup
	$(BIN)/gridwatch demo $(DEMO_ARGS)

test: setup postgresql browser
	$(BIN)/pytest $(PYTEST_ARGS)

bench: bench-server

bench-server: setup
	$(BIN)/python bench/server_bench.py $(BENCH_ARGS)

bench-console: setup browser
	$(BIN)/python bench/console_bench.py $(BENCH_ARGS)

bench-scale: setup postgresql
	$(BIN)/python bench/scale_bench.py $(BENCH_ARGS)

bench-edge: setup
	$(BIN)/python bench/edge_bench.py $(BENCH_ARGS)

# The litter model of models/litter.yaml: `make model-litter` runs the full schedule into models/litter/ (what
# models/city.yaml ships; about an hour on 2 CPU cores), `make model-litter SCHEDULE=short` CI's quick one into
# models/runs/litter-short/. FEEDBACK=http://server:8000 also learns from the detections operators reviewed.
SCHEDULE ?=
LITTER_OUT := $(if $(SCHEDULE),models/runs/litter-$(SCHEDULE),models/litter)
model-litter: setup
	$(BIN)/gridwatch models train --recipe models/litter.yaml --out $(LITTER_OUT) \
		$(if $(SCHEDULE),--schedule $(SCHEDULE)) $(if $(FEEDBACK),--feedback $(FEEDBACK))

bench-litter: setup
	$(BIN)/python bench/litter_model.py $(BENCH_ARGS)

bench-outbox: setup
	$(BIN)/python bench/edge_outbox.py $(BENCH_ARGS)

clean:
	rm -rf .demo .demo-media .pytest_cache
