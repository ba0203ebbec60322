# recstack: `make demo` trains the level-1 model and opens the web page; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= models/ml100k-mf
PYTEST_ARGS ?=

export GRADIO_ANALYTICS_ENABLED = False
export HF_HUB_OFFLINE = 1
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test test-fast bench bench-sideinfo bench-serve bench-scale serve lint venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, alone: the CPU build; a plain requirement would pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[deep,web,tune,serve,text,spark,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m recstack data fetch ml-100k
	$(PY) -m recstack train mf --dataset ml-100k --out $(DEMO_DIR)
	$(PY) -m recstack recommend $(DEMO_DIR) --user 196 -k 10
	$(PY) -m recstack web $(DEMO_DIR)

SERVE_DIR ?= models/registry
SERVE_PORT ?= 8000
# `make serve`: trains the level-1 model if needed, registers it, serves it (set RECSTACK_API_KEY for writes)
serve: $(STAMP)
	test -f $(DEMO_DIR)/model.json || $(PY) -m recstack train mf --dataset ml-100k --out $(DEMO_DIR)
	test -f $(SERVE_DIR)/ACTIVE || $(PY) -m recstack registry add $(SERVE_DIR) $(DEMO_DIR)
	$(PY) -m recstack serve $(SERVE_DIR) --port $(SERVE_PORT)

# wrk load run (60 s) and the ANN benchmark; figures for the README
bench-serve: $(STAMP)
	$(PY) -m benchmarks.serve $(BENCH_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# level 4 targets: fm on ml100k-folds, the msr-75 blend, own feature files, fm SGD speed
bench-sideinfo: $(STAMP)
	$(PY) -m benchmarks.sideinfo $(BENCH_ARGS)

bench-scale: $(STAMP)
	$(PY) -m benchmarks.scale $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
