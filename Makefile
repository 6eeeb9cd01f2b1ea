# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install pinned deps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install train-default train-phantom bench clean

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

# Retrain the phantom-only model from scratch (CPU, ~35 min on 2 quiet cores), export it into Resources/Models
# and validate it through the inference pipeline (card + docs/model-validation.md).
train-phantom: $(STAMP)
	$(VENV)/bin/mrsynth-train all --config phantom-demo --run-dir runs/phantom-demo --output Resources/Models/mrsynth-phantom-fsq --overwrite
	$(PY) -m training.onnx_export Resources/Models/mrsynth-phantom-fsq
	$(PY) -m training.validate Resources/Models/mrsynth-phantom-fsq --write-card --markdown docs/model-validation.md

# Rebuild the default-model candidate (needs ../shared/data; runs/real-eval from `python -m benchmarks.real_eval
# --models regression,mrsynth-phantom-fsq --work-dir runs/real-eval`): the phantom model's autoencoder, frozen,
# plus a translator trained on the real shared cases (3 held out) and phantoms; then ONNX, phantom validation
# and the held-out real-data comparison (docs/MODEL_CARD.md). Not shipped: see docs/MODEL_CARD.md.
train-default: $(STAMP)
	rm -rf runs/mrsynth-default
	$(PY) -m training.seed_stage1 --bundle Resources/Models/mrsynth-phantom-fsq --config mrsynth-default --run-dir runs/mrsynth-default
	$(VENV)/bin/mrsynth-train stage2 --config mrsynth-default --run-dir runs/mrsynth-default
	$(VENV)/bin/mrsynth-train export --config mrsynth-default --run-dir runs/mrsynth-default --output runs/mrsynth-default/bundle --overwrite
	$(PY) -m training.onnx_export runs/mrsynth-default/bundle
	$(PY) -m training.validate runs/mrsynth-default/bundle --markdown docs/model-validation-default.md
	$(PY) -m benchmarks.real_eval --models runs/mrsynth-default/bundle --only brats-gli-00001,ms-ljubljana-p26,isbi2015-ms-test02 --work-dir runs/real-eval-default --output runs/real-eval-default/report.md
	$(PY) -m benchmarks.merge_eval runs/real-eval/results.json runs/real-eval-default/results.json --only brats-gli-00001,ms-ljubljana-p26,isbi2015-ms-test02 --output docs/MODEL_CARD_EVAL_HELDOUT.md --json docs/measurements/real-eval-heldout.json

# Measure the pipeline on this machine (~15 min on 2 cores) and regenerate docs/PERFORMANCE.md;
# `$(PY) -m benchmarks.run --quick` is the same on tiny volumes (seconds).
bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf outputs runs .pytest_cache
