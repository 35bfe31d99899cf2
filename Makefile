# The two commands a fresh clone needs: `make demo` and `make test`. Both set themselves up, from
# the locks in requirements/ (exact versions of every package, transitive ones included):
#   requirements/demo.txt    what `make demo` needs (no PyTorch, no test tools)
#   requirements/test.txt    everything `make test` needs (a superset, same versions)
#   requirements/paddle.txt  the separate PaddlePaddle venv of the real-model tests
#   requirements/export.txt  the separate exporter venv of the conformance models (torch & co.)
# `make lock` re-locks after pyproject.toml changed (keeping every pin it can); `make lock-upgrade`
# moves every pin to the newest release pyproject.toml allows. README "Installs" says when.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
DEMO   := build/demo

DEMO_LOCK   := requirements/demo.txt
TEST_LOCK   := requirements/test.txt
PADDLE_LOCK := requirements/paddle.txt
EXPORT_LOCK := requirements/export.txt
DEMO_STAMP  := $(VENV)/.demo-installed
TEST_STAMP  := $(VENV)/.test-installed

.PHONY: demo test lint typecheck layering system-deps paddle-env export-env lock lock-upgrade \
        node-tests-report conformance clean

$(PY):
	python3 -m venv $(VENV)

# Install exactly a lock: --no-deps because the lock is complete (`pip check` proves it), then
# Tandem itself without build isolation, so its build backend is the locked setuptools too.
define install_lock
	$(PY) -m pip install -q --no-deps -r $(1)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
endef

$(DEMO_STAMP): $(DEMO_LOCK) pyproject.toml | $(PY)
	$(call install_lock,$(DEMO_LOCK))
	@touch $@

# The test profile holds the demo's, so it satisfies `make demo` as well.
$(TEST_STAMP): $(TEST_LOCK) pyproject.toml | $(PY)
	$(call install_lock,$(TEST_LOCK))
	@touch $@ $(DEMO_STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

# PaddlePaddle's exporter for the real-model tests; paddle2onnx pins onnx<=1.17, so it lives in
# a venv of its own and runs as a subprocess (tests/fixtures/export_paddle_models.py).
PADDLE_STAMP := .venv-paddle/.paddle-installed
$(PADDLE_STAMP): $(PADDLE_LOCK)
	@test -x .venv-paddle/bin/python || python3 -m venv .venv-paddle
	.venv-paddle/bin/python -m pip install -q --no-deps -r $(PADDLE_LOCK)
	.venv-paddle/bin/python -m pip check
	@touch $@
paddle-env: $(PADDLE_STAMP)

# torchvision / Ultralytics / transformers exporters of the conformance models
# (tests/conformance/export_*.py): torch and its CUDA wheels are gigabytes the test process never
# imports, so they live in a venv of their own, on Python 3.11 (the torch wheels here are cp311).
EXPORT_PYTHON ?= python3.11
EXPORT_STAMP  := .venv-export/.export-installed
$(EXPORT_STAMP): $(EXPORT_LOCK)
	@test -x .venv-export/bin/python || $(EXPORT_PYTHON) -m venv .venv-export
	.venv-export/bin/python -m pip install -q --no-deps -r $(EXPORT_LOCK)
	.venv-export/bin/python -m pip check
	@touch $@
export-env: $(EXPORT_STAMP)

# The real-model conformance report (docs/conformance.md and docs/conformance.json).
conformance: $(TEST_STAMP) export-env paddle-env
	$(PY) bench/conformance.py

# The main job on an embedded default: a zoo YOLOv5s, placed on AGX Orin's GPU + DLA, built into
# a plan, run (GPU segments on CUDA when present, else the CPU reference; DLA segments on the
# emulator), and the plan checked against ONNX Runtime (FP16: rtol 1e-2).
DEMO_MODEL  ?= yolov5s
DEMO_TARGET ?= orin-agx-64gb
demo: $(DEMO_STAMP)
	@mkdir -p $(DEMO)
	$(BIN)/tandem zoo $(DEMO_MODEL) --resolution 320 -o $(DEMO)/$(DEMO_MODEL).onnx
	$(BIN)/tandem inspect $(DEMO)/$(DEMO_MODEL).onnx
	$(BIN)/tandem inspect $(DEMO)/$(DEMO_MODEL).onnx --target $(DEMO_TARGET) --fp16
	$(BIN)/tandem build $(DEMO)/$(DEMO_MODEL).onnx --target $(DEMO_TARGET) --fp16 -o $(DEMO)/$(DEMO_MODEL).plan
	$(BIN)/tandem run $(DEMO)/$(DEMO_MODEL).plan --profile $(DEMO)/trace.json
	$(BIN)/tandem compare $(DEMO)/$(DEMO_MODEL).onnx --plan $(DEMO)/$(DEMO_MODEL).plan --rtol 1e-2

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

layering: $(TEST_STAMP)
	$(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy partitioner

# The suite on TEST_WORKERS pytest-xdist workers (CI has 2 cores): --dist loadgroup keeps each
# conformance chunk on one worker (tests/conftest.py, tests/models.py), so a worker exports a
# chunk once and deletes it as it goes, and the temp folder holds at most one chunk per worker.
# --durations=25: where the time went, in every CI log.
TEST_WORKERS ?= 2
# PYTHONUTF8=1: files opened without an encoding (torch's own templates among them) read as
# UTF-8 whatever locale an earlier test on the same worker left: twice (2026-12-02) a fresh
# clone failed inside torch.compile's template read with the 'ascii' codec, once even with
# tests/conftest.py restoring the locale after every test.
test: $(TEST_STAMP) system-deps paddle-env export-env lint layering typecheck
	PYTHONUTF8=1 $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=25

# The ONNX node-test report; its expected values depend on the locked onnx / ml_dtypes.
node-tests-report: $(TEST_STAMP)
	$(PY) bench/onnx_node_tests.py

# ----- the locks (pip-tools' pip-compile, itself pinned in requirements/lock-tools.txt) --------
LOCK_VENV  := .venv-lock
LOCK_STAMP := $(LOCK_VENV)/.lock-tools-installed
$(LOCK_STAMP): requirements/lock-tools.txt
	@test -x $(LOCK_VENV)/bin/python || python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --no-deps -r requirements/lock-tools.txt
	@touch $@

COMPILE = $(LOCK_VENV)/bin/pip-compile -q --strip-extras --allow-unsafe --no-emit-index-url \
          --no-emit-find-links $(LOCK_FLAGS)
lock: $(LOCK_STAMP)
	$(COMPILE) --extra compare --extra cuda --extra xavier --extra test --extra real-models \
	    -o $(TEST_LOCK) pyproject.toml requirements/build.in
	$(COMPILE) --extra compare --extra cuda -c $(TEST_LOCK) \
	    -o $(DEMO_LOCK) pyproject.toml requirements/build.in
	$(COMPILE) -o $(PADDLE_LOCK) requirements/paddle.in
	$(COMPILE) -o $(EXPORT_LOCK) requirements/export.in
	$(COMPILE) -o requirements/lock-tools.txt requirements/lock-tools.in

lock-upgrade:
	$(MAKE) lock LOCK_FLAGS=--upgrade

clean:
	rm -rf build $(VENV) .venv-paddle .venv-export $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache
