# replicate: the two commands are `make reproduce-all` and `make test`.
#   make setup                 create .venv and install the pinned dependencies
#   make test                  library tests + every notebook under the smoke profile (nbval)
#   make reproduce-all         execute every notebook with papermill: cpu profile in place,
#                              other profiles into build/<profile>/ (committed outputs stay cpu)
#   make reproduce-baselines   one paper's notebooks (one target per folder in notebooks/)
#   make bench                 replicate's training loop vs a bare PyTorch loop (images, a character LM)
# Variables: PROFILE=cpu|paper|smoke  FRESH=1 (retrain, ignore stored runs)  THREADS=N
#            WORKERS=N (processes for independent runs in reproduce targets; default 2)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
FRESH ?= 0
THREADS ?=
WORKERS ?= 2
NOTEBOOK_DIRS := $(sort $(notdir $(wildcard notebooks/*)))
export REPLICATE_PROGRESS := 0
ifneq ($(THREADS),)
export REPLICATE_THREADS := $(THREADS)
endif

.PHONY: setup test data reproduce-all bench clean $(addprefix reproduce-,$(NOTEBOOK_DIRS))

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

setup: $(VENV)/.installed

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: setup
	REPLICATE_PROFILE=smoke $(PY) -m pytest --nbval-lax -p no:cacheprovider tests notebooks; \
	status=$$?; if [ $$status -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$status

data: setup
	$(PY) -m replicate ensure-data --profile $(PROFILE)

reproduce-all: data $(addprefix reproduce-,$(NOTEBOOK_DIRS))
	if [ "$(PROFILE)" = cpu ]; then $(PY) -c 'from replicate import report; report.update_readme()'; fi

$(addprefix reproduce-,$(NOTEBOOK_DIRS)): reproduce-%: data
	@for nb in notebooks/$*/*.ipynb; do \
	  out="$$nb"; if [ "$(PROFILE)" != cpu ]; then out="build/$(PROFILE)/$$nb"; mkdir -p "$$(dirname $$out)"; fi; \
	  echo "== $$nb ($(PROFILE) profile) -> $$out"; \
	  REPLICATE_PROFILE=$(PROFILE) REPLICATE_FRESH=$(FRESH) REPLICATE_WORKERS=$(WORKERS) $(PY) -m papermill "$$nb" "$$out" \
	    --cwd "$$(dirname $$nb)" -k python3 --no-progress-bar --log-level WARNING || exit 1; \
	done

bench: setup
	$(PY) -m replicate.bench

clean:
	rm -rf build .pytest_cache
