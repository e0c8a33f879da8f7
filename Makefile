# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned so pip takes the CPU build on disk instead of several GB of CUDA wheels.
TORCH  ?= torch==2.13.0

.PHONY: run ask test install install-train browser lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(VENV)/.installed-train: $(VENV)/.installed
	$(BIN)/pip install -q '$(TORCH)'
	$(BIN)/pip install -q -e '.[dev,train]'
	touch $@

install: $(VENV)/.installed

install-train: $(VENV)/.installed-train

run: install
	$(BIN)/policybot chat

# One question without activating the venv: make ask Q="How many vacation days do I get?"
ask: install
	@test -n "$(Q)" || { echo 'usage: make ask Q="How many vacation days do I get?"' >&2; exit 2; }
	@$(BIN)/policybot ask "$(Q)"

# The admin console's browser tests drive Debian's headless Chromium with Playwright (no browser download).
# Without root or a package mirror the browser tests say they were skipped instead of failing the build.
browser:
	@command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
		echo "make: could not install chromium; the admin console's browser test will be skipped" >&2

test: install-train browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) *.egg-info
