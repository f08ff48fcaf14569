# llmprep — two commands on a fresh machine:  make run   /   make test
# Every target bootstraps .venv (idempotent, quick when already done) and wraps the `llmprep` CLI.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmprep-installed
# Tests and CI use one thread per process; `make run` may use more (LLMPREP_THREADS).
ONE_THREAD := OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE MKL_NUM_THREADS=1 LLMPREP_THREADS=1 HF_HUB_OFFLINE=1
TEST_ENV   := $(ONE_THREAD) MPLBACKEND=Agg
# The notebooks under `make test` run as under `make run` (the kernel's inline plots, for the website test);
# in CI (CI set) the progress bar is redrawn every 30 s, not 10 times a second, so the log stays readable.
RUN_ENV    := $(ONE_THREAD) $(if $(CI),TQDM_MININTERVAL=30)
JOBS   ?= 2

.PHONY: help setup data run test lab release release-check grade bench book browser clean

help:
	@echo "make run      set up, fetch assets, execute every chapter headless, print the results table"
	@echo "make test     set up, fetch assets, execute every notebook once (llmprep run), then the whole test suite"
	@echo "make lab      JupyterLab (with nbgrader): opens on work/ (llmprep start CHAPTER), or course/ while work/ is empty"
	@echo "make release  regenerate course/ from solutions/   (make release-check: verify only)"
	@echo "make grade A=ch01_training   grade submitted/<student>/<A>/ into the gradebook"
	@echo "make bench    the measured figures behind README's results table"
	@echo "make book     the course website in build/book/ from the notebooks make run executed (serve: python -m http.server -d build/book)"

# torch is pinned in the same install step as everything else (pyproject.toml),
# otherwise pip resolves a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $(STAMP)

setup: $(STAMP)

data: setup
	$(BIN)/llmprep data

run: data
	$(BIN)/llmprep run $(CHAPTERS)

# Debian's Chromium and its driver for the website's browser test (tests/site/test_book.py); a no-op once installed.
# `apt-get update` only when the install fails (an old or empty package list).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  test "$$(id -u)" = 0 || { echo "tests/site/test_book.py needs Debian's chromium and chromium-driver:" \
	    "sudo apt-get install -y --no-install-recommends chromium chromium-driver"; exit 1; }; \
	  echo "installing chromium chromium-driver (Debian packages) for tests/site/test_book.py"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; }; }

# Every notebook is executed once: by `llmprep run` (JOBS at a time, the longest first, payoff asserts; the results
# table, build/results.jsonl, executed copies in build/executed/), then the suite, whose notebook tests read those
# copies (tests/chapters/test_notebooks.py names a failing notebook and its cell). A failed notebook does not stop
# the suite; either failing fails `make test`. Inner loop: pytest -m "not sandbox and not browser and not slow".
TEST_RUN    := env -u MPLBACKEND $(RUN_ENV) $(BIN)/python -m llmprep run --jobs $(JOBS)
TEST_PYTEST := LLMPREP_REQUIRE_BROWSER=1 LLMPREP_REQUIRE_SANDBOX=1 $(TEST_ENV) $(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder --durations=15 tests

test: data browser
	$(BIN)/ruff check .
	@rc=0; echo '$(TEST_RUN)'; $(TEST_RUN) || rc=$$?; \
	echo '$(TEST_PYTEST)'; $(TEST_PYTEST) || rc=$$?; exit $$rc

lab: setup
	$(BIN)/llmprep lab

release: setup
	$(BIN)/llmprep release

release-check: setup
	$(BIN)/llmprep release --check

grade: setup
	$(BIN)/llmprep grade $(A)

bench: data
	$(BIN)/llmprep bench

book: setup
	$(BIN)/llmprep book

clean:
	rm -rf build .pytest_cache
