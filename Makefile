# Two entry points: `make demo` and `make test`. Both set up .venv on a fresh machine.
# torch is pinned to the CPU build that lies on this machine's disk; an open range would pull a
# multi-GB CUDA build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
export OMP_NUM_THREADS ?= 2

.PHONY: demo reproduce test test-all lint format browser bench bench-deps install install-dev clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e .
	touch $@

# ray and slurm (submitit): the sweep executors' tests run them (a local Ray instance, submitit's
# local executor); neither replaces the pinned torch.
$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install --quiet -e ".[dev,interactive,tensorboard,hf,ray,slurm,lightning]"
	touch $@

install: $(VENV)/.base
install-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/sgdscope demo

# Every recipe's small variant over its seeds, judged; one report (REPRODUCTION.md). ≤ 30 min on
# 2 cores is the target.
reproduce: $(VENV)/.base
	$(VENV)/bin/sgdscope reproduce --workers 2 --out runs/reproduce

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The report test opens the HTML page in headless Chromium (Debian's package). Installed when
# missing and we may (root); otherwise that one test skips with its reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null) || echo "chromium not installed: the browser test will skip"; }

test: lint browser
	$(PY) -m pytest -n 2 -m "not slow" -q

test-all: lint browser
	$(PY) -m pytest -n 2 -q

# Benchmark peers, without their dependencies (they would pull another torch).
bench-deps: $(VENV)/.dev
	$(PY) -m pip install --quiet --no-deps pyhessian==0.1 hessian-eigenthings==1.0.0a5 \
	  curvlinops-for-pytorch==3.0.1 tqdm einops einconv linear_operator

bench: bench-deps
	$(PY) benchmarks/curvature.py
	$(PY) benchmarks/walk.py
	$(PY) benchmarks/trainer.py

clean:
	rm -rf $(VENV) runs .pytest_cache
