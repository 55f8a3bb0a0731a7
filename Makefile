# `make demo`, `make test` and `make bench` set everything up on first use (a .venv from the pins).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: install demo test test-fast bench lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned dependencies into $(VENV) (first run: a few minutes)..."
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[eval,train,serve,onnx,test,ray,milvus]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import winnow, torch, sentence_transformers, faiss, bm25s, ir_measures" 
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m winnow.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) -m bench.run

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
