# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install pinned deps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install train-default bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mrsynth demo --output-dir outputs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider Testing

# Retrain the built-in model from scratch (CPU, ~25 min on 2 cores), export it into Resources/Models and
# validate it through the inference pipeline (card + docs/model-validation.md).
train-default: $(STAMP)
	$(VENV)/bin/mrsynth-train all --config phantom-demo --run-dir runs/phantom-demo --output Resources/Models/mrsynth-phantom-fsq --overwrite
	$(PY) -m training.validate Resources/Models/mrsynth-phantom-fsq --write-card --markdown docs/model-validation.md

# Measure the pipeline on this machine (~15 min on 2 cores) and regenerate docs/PERFORMANCE.md;
# `$(PY) -m benchmarks.run --quick` is the same on tiny volumes (seconds).
bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf outputs runs .pytest_cache
