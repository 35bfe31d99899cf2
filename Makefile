# The two commands a fresh clone needs: `make demo` and `make test`. Both set themselves up.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := build/demo

.PHONY: demo test lint typecheck layering system-deps paddle-env clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,cuda,real-models]'
	@touch $(STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

# PaddlePaddle's exporter for the real-model tests; paddle2onnx pins onnx<=1.17, so it lives in
# a venv of its own and runs as a subprocess (tests/fixtures/export_paddle_models.py).
PADDLE_STAMP := .venv-paddle/.installed-stamp
$(PADDLE_STAMP):
	@test -x .venv-paddle/bin/python || python3 -m venv .venv-paddle
	.venv-paddle/bin/pip install -q paddlepaddle==3.3.1 paddle2onnx==2.1.0 packaging
	@touch $(PADDLE_STAMP)
paddle-env: $(PADDLE_STAMP)

# The main job on an embedded default: a zoo YOLOv5s, placed on AGX Orin's GPU + DLA, built into
# a plan, run (GPU segments on CUDA when present, else the CPU reference; DLA segments on the
# emulator), and the plan checked against ONNX Runtime (FP16: rtol 1e-2).
DEMO_MODEL  ?= yolov5s
DEMO_TARGET ?= orin-agx-64gb
demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(BIN)/tandem zoo $(DEMO_MODEL) --resolution 320 -o $(DEMO)/$(DEMO_MODEL).onnx
	$(BIN)/tandem inspect $(DEMO)/$(DEMO_MODEL).onnx
	$(BIN)/tandem inspect $(DEMO)/$(DEMO_MODEL).onnx --target $(DEMO_TARGET) --fp16
	$(BIN)/tandem build $(DEMO)/$(DEMO_MODEL).onnx --target $(DEMO_TARGET) --fp16 -o $(DEMO)/$(DEMO_MODEL).plan
	$(BIN)/tandem run $(DEMO)/$(DEMO_MODEL).plan --profile $(DEMO)/trace.json
	$(BIN)/tandem compare $(DEMO)/$(DEMO_MODEL).onnx --plan $(DEMO)/$(DEMO_MODEL).plan --rtol 1e-2

lint: $(STAMP)
	$(BIN)/ruff check .

layering: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy partitioner

test: $(STAMP) system-deps paddle-env lint layering typecheck
	$(BIN)/pytest -q

clean:
	rm -rf build $(VENV) .venv-paddle .pytest_cache .mypy_cache .ruff_cache
