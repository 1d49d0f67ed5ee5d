# mhce_nmt: two commands do all set-up on a fresh machine.
#   make demo   install into .venv, then train + decode + score the main job (real de-en corpus)
#   make demo-multilingual   the same for one English -> 8 languages model (51 minutes on 2 cores, install excluded)
#   make test   install into .venv, then run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.mhce_installed

# Pinned versions (see README "Install" for why each one).
TORCH_VERSION   ?= 2.13.0
FAIRSEQ_PACKAGE ?= fairseq-fixed==0.12.3.1
RUNTIME_DEPS    := hydra-core==1.3.2 omegaconf==2.3.0 "regex>=2023" "sacrebleu>=2.4,<3" "tqdm>=4.60" \
                   "bitarray>=2.8" "scikit-learn>=1.3" "cffi>=1.15" "sentencepiece>=0.2" \
                   "pytest>=8" "hypothesis>=6.100" "matplotlib>=3.7"

.PHONY: install test demo demo-multilingual clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24" setuptools wheel
	$(PIP) install torch==$(TORCH_VERSION) "numpy>=1.26" "cython>=3.0"
	$(PIP) install --no-deps --no-build-isolation $(FAIRSEQ_PACKAGE)
	$(PIP) install $(RUNTIME_DEPS)
	$(PIP) install --no-deps -e .
	$(PY) -c "import fairseq, mhce_nmt; print('mhce_nmt installed with fairseq', fairseq.__version__)"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) -m recipes.libreoffice_de_en.run $(DEMO_ARGS)

# Options of the multilingual demo, e.g. make demo-multilingual MULTI_ARGS="--langs ja ko --train-minutes 20"
MULTI_ARGS ?=

demo-multilingual: install
	$(PY) -m recipes.libreoffice_multi.run $(MULTI_ARGS)

clean-venv:
	rm -rf $(VENV)
