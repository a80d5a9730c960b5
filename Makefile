# The README's two commands: `make demo` (the main job) and `make test`.
# Each sets up .venv by itself; constraints.txt pins every package (torch's CPU build
# included) so a fresh machine installs in minutes, not gigabytes of CUDA wheels.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS_DIR ?= runs
PRESET ?= quick

.PHONY: install demo run test lab clean

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[notebooks,test]'
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
	$(VENV)/bin/workbench notebooks notebooks
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs .pytest_cache
