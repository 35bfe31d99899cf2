# The two commands a fresh clone needs: `make demo` and `make test`. Both set themselves up.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := build/demo

.PHONY: demo test lint typecheck layering system-deps clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,cuda]'
	@touch $(STAMP)

system-deps:
	@bash scripts/ensure-system-deps.sh

demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(BIN)/tandem zoo resnet18 --resolution 224 -o $(DEMO)/resnet18.onnx
	$(BIN)/tandem inspect $(DEMO)/resnet18.onnx
	$(BIN)/tandem compare $(DEMO)/resnet18.onnx

lint: $(STAMP)
	$(BIN)/ruff check .

layering: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy partitioner

test: $(STAMP) system-deps lint layering typecheck
	$(BIN)/pytest -q

clean:
	rm -rf build $(VENV) .pytest_cache .mypy_cache .ruff_cache
