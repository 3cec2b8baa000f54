# Two commands for a fresh machine: `make run` and `make test`. Both set up what they need once;
# the stamp files make the second run skip the install.
#
# What gets installed is pinned: lock/core.txt (the library: train, report, predict) and
# lock/dev.txt (every extra plus the test tools), with versions and SHA-256 hashes, so every
# machine gets the same packages. pyproject.toml keeps ranges for people who pip-install the
# package themselves; `make lock` re-resolves the locks after a change there (keeping the
# current pins where they still fit), `make lock-upgrade` moves every pin to the newest release.
#
# uv installs and resolves (a minute or more faster than pip here). uv does not read pip's
# configuration, so it is told where pip finds its wheels (find-links): torch is pinned to the
# 2.13.0 CPU build that lies there, and a machine without that file fails with a clear
# "not found" instead of pulling the multi-GB CUDA build of PyPI.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mnistlab-installed
DEV    := $(VENV)/.mnistlab-dev-installed

CORE_LOCK  := lock/core.txt
DEV_LOCK   := lock/dev.txt
TOOLS_LOCK := lock/tools.txt
UV_VERSION := 0.13.8

# uv lives in a venv of its own, so the project's venv and its locks never contain it.
TOOLS := .venv-tools
UV    := $(TOOLS)/bin/uv

# Deferred (=), so pip is asked only when uv is about to run.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
# --compile-bytecode: write every package's .pyc at install. Where PYTHONDONTWRITEBYTECODE is
# set (as on the project's machines), Python would otherwise compile torch's sources again in
# every process: 1.6 s instead of 1.0 s to import torch and the CLI, and 2.7 s instead of 1.1 s
# for the torch._dynamo import that creating an optimizer triggers. It adds about 13 s to setup.
UV_ARGS     = --python $(BIN)/python --compile-bytecode $(foreach f,$(FIND_LINKS),--find-links $(f))
UV_COMPILE  = UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile --quiet --generate-hashes \
              --python-version 3.11 $(foreach f,$(FIND_LINKS),--find-links $(f))

# Debian packages that some tests need, as package:path-that-shows-it-is-there:what_needs_it (_ for spaces).
SYSTEM_PACKAGES := chromium:/usr/bin/chromium:the_browser_test \
                   dataset-fashion-mnist:/usr/share/datasets/fashion-mnist:the_Fashion-MNIST_tests

.PHONY: setup setup-dev system-deps test-data run test lint lock lock-upgrade bench speedrun clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(TOOLS_LOCK)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes -r $(TOOLS_LOCK)
	touch $@

# The stamps are touched only after the install succeeds, so an interrupted install is retried.
$(STAMP): $(CORE_LOCK) pyproject.toml | $(BIN)/python $(UV)
	$(UV) pip install --quiet $(UV_ARGS) --require-hashes -r $(CORE_LOCK)
	$(UV) pip install --quiet $(UV_ARGS) --no-deps -e .
	touch $@

$(DEV): $(DEV_LOCK) pyproject.toml | $(BIN)/python $(UV)
	$(UV) pip install --quiet $(UV_ARGS) --require-hashes -r $(DEV_LOCK)
	$(UV) pip install --quiet $(UV_ARGS) --no-deps -e .
	touch $(STAMP) $@

setup: $(STAMP)

setup-dev: $(DEV)

# Installs the missing Debian packages when it can (root, apt-get), else says in one line which
# tests will skip and how to enable them. Checking is instant, so it runs every time.
system-deps:
	@missing=""; what=""; \
	for entry in $(SYSTEM_PACKAGES); do \
	    pkg=$${entry%%:*}; rest=$${entry#*:}; path=$${rest%%:*}; need=$${rest#*:}; \
	    [ -e "$$path" ] || { missing="$$missing $$pkg"; what="$$what, $$(echo $$need | tr _ ' ')"; }; \
	done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's$$missing (for$${what#,})"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	else \
	    echo "make: skipping$${what#,} (missing$$missing); enable with: sudo apt-get install$$missing"; \
	fi

# The Fashion-MNIST training test reads the verified data cache; fetching from the Debian
# package is a local copy, and a no-op once the cache is complete.
test-data: setup-dev system-deps
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
	    $(BIN)/mnistlab data fetch --dataset fashion-mnist >/dev/null; fi

run: setup
	$(BIN)/mnistlab data fetch
	$(BIN)/mnistlab data info
	$(BIN)/mnistlab report

test: setup-dev test-data
	$(BIN)/python -m pytest

lint: setup-dev
	$(BIN)/ruff check src tests notebooks

# dev is resolved first; core is then resolved with dev's pins as its starting point, so the two
# locks agree on every package they share. Each is written to a temp file and moved into place.
LOCK_UPGRADE :=
lock: | $(UV)
	mkdir -p lock
	rm -f lock/*.tmp
	echo "uv==$(UV_VERSION)" | $(UV_COMPILE) $(LOCK_UPGRADE) - -o $(TOOLS_LOCK).tmp
	[ ! -f $(DEV_LOCK) ] || cp $(DEV_LOCK) $(DEV_LOCK).tmp
	$(UV_COMPILE) $(LOCK_UPGRADE) --extra dev pyproject.toml -o $(DEV_LOCK).tmp
	cp $(DEV_LOCK).tmp $(CORE_LOCK).tmp
	$(UV_COMPILE) pyproject.toml -o $(CORE_LOCK).tmp
	mv $(TOOLS_LOCK).tmp $(TOOLS_LOCK)
	mv $(DEV_LOCK).tmp $(DEV_LOCK)
	mv $(CORE_LOCK).tmp $(CORE_LOCK)

lock-upgrade:
	$(MAKE) lock LOCK_UPGRADE=--upgrade

# The Keras/TensorFlow reference lives in its own venv, apart from mnistlab's dependencies.
BENCH_VENV := .bench-venv

BENCH_STAMP := $(BENCH_VENV)/.installed

# The stamp is touched only after the install succeeds, so an interrupted install is retried.
$(BENCH_STAMP):
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet tensorflow-cpu==2.21.0 keras
	touch $@

bench: setup $(BENCH_STAMP)
	$(BIN)/mnistlab bench

speedrun: setup
	$(BIN)/mnistlab speedrun --seeds 5

clean:
	rm -rf $(VENV) $(TOOLS) $(BENCH_VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
