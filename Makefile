# flowstudio: `make demo` and `make test` work on a fresh machine with nothing installed by hand.
# The virtual environment is created on first use. On a CPU machine torch==2.13.0 is installed
# first (the CPU wheel); on a machine whose python already has torch (e.g. a CUDA build on a GPU
# box) the venv sees it through --system-site-packages and torch is not reinstalled.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flowstudio-installed
TORCH_CPU := torch==2.13.0
OUT ?= outputs

.PHONY: help venv chromium demo test test-slow test-all bench lint format clean

help:
	@echo "make demo       generate a video with the embedded model -> $(OUT)/demo/"
	@echo "make test       run the test suite (CPU, < 20 min on 2 cores)"
	@echo "make test-slow  run the heavier tests marked slow"
	@echo "make bench      run the benchmarks -> benchmarks/results/"
	@echo "make lint       ruff check and ruff format --check"

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "python already has torch: venv with --system-site-packages (torch is not reinstalled)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	@if ! $(PY) -c "import torch" 2>/dev/null; then \
	  echo "installing $(TORCH_CPU) (CPU wheel)"; \
	  $(PY) -m pip install --quiet $(TORCH_CPU); \
	fi
	$(PY) -m pip install --quiet -e ".[dev,serve,studio,preprocess,distill,data]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m flowstudio.demo --out $(OUT)/demo

# The studio's browser test (tests/test_studio_browser.py) drives Debian's chromium through Playwright
# and fails without it: installed here once (apt-get, as root or with sudo); nothing when on PATH.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get) for the studio's browser test"; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# pytest exits 5 when it collected no test; that is a failure here, like any non-zero exit.
test: $(STAMP) chromium
	$(PY) -m pytest -q -ra; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest ran no test: failing"; fi; exit $$status

test-slow: $(STAMP)
	$(PY) -m pytest -q -ra -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -ra -m "slow or not slow"

bench: $(STAMP)
	$(PY) benchmarks/solver_roundtrip.py
	$(PY) benchmarks/edit_speed.py
	$(PY) benchmarks/metric_speed.py
	$(PY) benchmarks/shapes_readers.py
	$(PY) benchmarks/serve_load.py

lint: $(STAMP)
	$(PY) -m ruff check flowstudio tests benchmarks
	$(PY) -m ruff format --check flowstudio tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format flowstudio tests benchmarks

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
