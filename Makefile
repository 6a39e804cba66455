# Two commands: `make lab` opens the course, `make test` runs every test.
# Also: `make lab-instructor` (formgrader), `make slides` (every lecture), `make site` (the course web site).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the instructor's tools and the test suite's extras, on top of the student's install
DEV    := $(VENV)/.installed-dev

.PHONY: lab lab-instructor slides site system-deps hub hub-deps test test-gpu install install-dev build clean

# The lock files (lock/lab.txt, lock/all.txt; tools/lock.sh writes them from pyproject.toml) pin every
# transitive package with its hashes, for Linux x86_64 and Python 3.11: there the environment of week 10 is
# the environment of week 1. Elsewhere pip resolves from pyproject.toml's pins (torch, nbgrader, ...).
LOCKED := $(shell $(PYTHON) -c "import platform, sys; print(int(sys.platform == 'linux' and platform.machine() == 'x86_64' and sys.version_info[:2] == (3, 11)))" 2>/dev/null)

ifeq ($(LOCKED),1)
define install_from
	$(BIN)/python -m pip install --quiet --require-hashes -r $(1)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
endef
else
define install_from
	@echo "note: lock/ is for Linux x86_64 with Python 3.11; installing from pyproject.toml's pins instead"
	$(BIN)/python -m pip install --quiet $(if $(findstring all,$(1)),-e ".[test]",-e .)
endef
endif

$(STAMP): pyproject.toml lock/lab.txt
	$(PYTHON) -m venv $(VENV)
	$(call install_from,lock/lab.txt)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (course)"
	touch $(STAMP)

$(DEV): $(STAMP) lock/all.txt
	$(call install_from,lock/all.txt)
	touch $(DEV)

install: $(STAMP)

install-dev: $(DEV)

# LAB_ARGS go to `jupyter lab`, e.g. make lab LAB_ARGS="--no-browser --port 8890"
lab: $(STAMP)
	$(BIN)/course lab $(LAB_ARGS)

lab-instructor: $(DEV)
	$(BIN)/course lab --instructor $(LAB_ARGS)

slides: $(DEV)
	$(BIN)/course slides --all

# publishes build/slides with the site when `make slides` has made them
site: $(DEV)
	$(BIN)/course site $(if $(wildcard build/slides/*.slides.html),--slides build/slides)

# chromium, chromium-driver (browser tests) and bubblewrap (grading sandbox) from Debian
system-deps:
	@bash tools/system-deps.sh

# the course hub's proxy: configurable-http-proxy, pinned in hub/package-lock.json (npm from Debian)
HUB_PROXY := hub/node_modules/.bin/configurable-http-proxy
$(HUB_PROXY): hub/package.json hub/package-lock.json
	cd hub && npm ci --no-audit --no-fund --loglevel=error
	touch $(HUB_PROXY)

hub-deps: system-deps $(HUB_PROXY)

# ROSTER=roster.csv (username,role); run as root. HUB_ARGS go to `course hub` (--bind, --exchange, --course-dir)
hub: $(DEV) hub-deps
	$(BIN)/course hub --roster $(ROSTER) $(HUB_ARGS)

test: $(DEV) system-deps hub-deps
	$(BIN)/python -m pytest

test-gpu: $(DEV)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu needs CUDA, and torch sees none')"
	COURSE_DEVICE=cuda $(BIN)/python -m pytest solutions

build: $(DEV)
	$(BIN)/course build

clean:
	rm -rf $(VENV) grading build exchange .pytest_cache
