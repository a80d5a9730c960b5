# The README's two commands: `make demo` (the main job) and `make test`.
# Each sets up .venv by itself; constraints.txt pins every package's version.
#
# Which torch build: TORCH=auto (default) installs PyTorch's CPU build unless `nvidia-smi`
# finds an NVIDIA GPU, in which case the default index's build (CUDA on Linux) is used;
# TORCH=cpu or TORCH=cuda chooses (cuda adds the `gpu` extra, NVML). The CPU build comes
# from TORCH_CPU_INDEX, added as an extra index (its `+cpu` wheels win over the default
# index's CUDA ones); when that index cannot be reached within 5 s it is left out and the
# configured index decides.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS_DIR ?= runs
PRESET ?= quick
TORCH ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install demo run test lab clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@build="$(TORCH)"; \
	if [ "$$build" = auto ]; then \
		if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then build=cuda; else build=cpu; fi; \
	fi; \
	index=""; extras=notebooks,test; \
	if [ "$$build" = cuda ]; then extras=notebooks,test,gpu; fi; \
	if [ "$$build" = cpu ]; then \
		if $(PY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$(TORCH_CPU_INDEX)" 2>/dev/null; then \
			index="--extra-index-url $(TORCH_CPU_INDEX)"; echo "torch: CPU build from $(TORCH_CPU_INDEX)"; \
		else echo "torch: $(TORCH_CPU_INDEX) unreachable; torch from the configured index"; fi; \
	else echo "torch: $$build build from the configured index"; fi; \
	$(PY) -m pip install -q -c constraints.txt $$index -e ".[$$extras]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

# The main job: the collaborative_training notebook executed headless by papermill, leaving
# the rendered notebook (.ipynb and .html) next to the run it made.
demo: install
	$(VENV)/bin/workbench batch collaborative_training -p preset=$(PRESET) --runs-dir $(RUNS_DIR)

# The same run from the command line, with a live progress display.
run: install
	$(VENV)/bin/workbench run --preset $(PRESET) --runs-dir $(RUNS_DIR)

test: install
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser tests will skip"
	$(PY) -m pytest -q -ra

# The shipped notebooks are copied into notebooks/ (kept when there: your edits survive).
lab: install
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs .pytest_cache
