# attnlab: two commands for a newcomer.
#   make demo   train a small translator offline and show its attention
#   make test   run the whole test suite
# Both create .venv on first use and install what they need into it.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch; see README "Choosing a CPU or GPU build" for CUDA.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast venv bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/attnlab demo

test: venv
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(VENV)/bin/attnlab bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info
