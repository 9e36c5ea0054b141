# fashion-cnn: `make run` trains, evaluates and reports; `make test` runs the test suite.
# Both set up everything on a fresh machine: .venv, the package, the dataset.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RECIPE ?= fast
RUN    ?= runs/$(RECIPE)
# pytest processes (pytest-xdist): 2 ran the suite in 409 s against 613 s for 1 on a 2-core AMD Zen 3
# (most tests are bound by Python-side tracing, not by TensorFlow's threads).
TEST_WORKERS ?= 2
DEBIAN_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install data browser run test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The Debian/Ubuntu package when apt and root (or password-less sudo) are available;
# otherwise `fashion-cnn data` finds the files elsewhere or downloads a verified copy.
data: install
	@if [ ! -f $(DEBIAN_DATA) ] && [ -z "$$FASHION_MNIST_DIR" ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null || true; \
	  fi; \
	fi
	$(BIN)/fashion-cnn data

# Debian's Chromium for the end-to-end browser test (Playwright drives it; it downloads
# no browser of its own).
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null || true; \
	  fi; \
	fi

run: data
	$(BIN)/fashion-cnn train --recipe $(RECIPE) --out $(RUN)
	$(BIN)/fashion-cnn evaluate $(RUN)
	@echo "Report: $$(pwd)/$(RUN)/report.html"

test: data browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: data
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/recipes.py --write BENCHMARKS.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
