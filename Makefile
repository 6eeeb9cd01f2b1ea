# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install pinned deps.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install train-default train-latent train-phantom bench clean

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
	$(PY) -m training.bundles.onnx_export Resources/Models/mrsynth-phantom-fsq
	$(PY) -m training.bundles.validate Resources/Models/mrsynth-phantom-fsq --write-card --markdown docs/model-validation.md

# Rebuild the default model mrsynth-regression (needs ../shared/data; ~25 min on 2 CPU cores, docs/MODEL_CARD.md):
# train on every co-registered real case + phantoms into Resources/Models, then the leave-one-case-out evaluation on
# every real case (with the phantom model on the same cases; docs/MODEL_CARD_EVAL.md) and the held-out montage.
train-default: $(STAMP)
	$(VENV)/bin/mrsynth-train regression --config regression-real --run-dir runs/regression-real --output Resources/Models/mrsynth-regression --overwrite
	$(PY) -m benchmarks.real_eval --models regression --uncertainty-samples 2 --regression-min-cases 4 --work-dir runs/real-eval-default --output runs/real-eval-default/report.md
	$(PY) -m benchmarks.real_eval --models mrsynth-phantom-fsq --work-dir runs/real-eval-phantom --output runs/real-eval-phantom/report.md
	$(PY) -m benchmarks.merge_eval runs/real-eval-default/results.json runs/real-eval-phantom/results.json --output docs/MODEL_CARD_EVAL.md --json docs/measurements/real-eval-all-cases.json
	$(PY) -m benchmarks.heldout_montage --model 'runs/real-eval-default/folds/{case}' --cases-only brats-gli-00001,ms-ljubljana-p26,tcga-fg-6692 --samples 2 --montage docs/images/heldout-montage-regression.png --json docs/measurements/heldout-montage-regression.json

# Rebuild the real-data latent candidate (needs ../shared/data; ~2 h on 2 CPU cores, docs/MODEL_CARD.md): stage 1 on
# every real volume at 1 mm (resumable), its held-out reconstruction table, stage 2 (fusion translator) on the
# co-registered real cases + phantoms with that autoencoder frozen, export with ONNX graphs, the held-out real-data
# comparison against the regression baseline (same 3 held-out cases) and the montage of what a clinician sees.
HELDOUT := brats-gli-00001,ms-ljubljana-p26,isbi2015-ms-test02
train-latent: $(STAMP)
	$(VENV)/bin/mrsynth-train stage1 --config real-stage1 --run-dir runs/real-stage1 $(if $(wildcard runs/real-stage1/stage1/last.json),--resume,)
	$(PY) -m training.autoencoder.stage1_eval --config real-stage1 --run-dir runs/real-stage1 --bf16 --json docs/measurements/stage1-real-heldout.json
	rm -rf runs/mrsynth-default
	$(PY) -m training.autoencoder.seed_stage1 --from-run runs/real-stage1 --config mrsynth-default --run-dir runs/mrsynth-default
	$(VENV)/bin/mrsynth-train stage2 --config mrsynth-default --run-dir runs/mrsynth-default
	$(VENV)/bin/mrsynth-train export --config mrsynth-default --run-dir runs/mrsynth-default --output runs/mrsynth-default/bundle --overwrite
	$(PY) -m training.bundles.onnx_export runs/mrsynth-default/bundle
	$(PY) -m benchmarks.real_eval --models regression --only $(HELDOUT) --work-dir runs/real-eval-regression --output runs/real-eval-regression/report.md
	$(PY) -m benchmarks.real_eval --models runs/mrsynth-default/bundle --only $(HELDOUT) --work-dir runs/real-eval-default --output runs/real-eval-default/report.md
	$(PY) -m benchmarks.merge_eval runs/real-eval-regression/results.json runs/real-eval-default/results.json --only $(HELDOUT) --output docs/MODEL_CARD_EVAL_HELDOUT.md --json docs/measurements/real-eval-heldout.json
	$(PY) -m benchmarks.heldout_montage --model runs/mrsynth-default/bundle --cases-only brats-gli-00001,ms-ljubljana-p26 --samples 4 --montage docs/images/heldout-montage.png --json docs/measurements/heldout-montage.json

# Measure the pipeline on this machine and regenerate docs/PERFORMANCE.md (the default model, ~10 min on 2 cores)
# and docs/PERFORMANCE-networks.md (the network bundle on both backends, ~15 min);
# `$(PY) -m benchmarks.run --quick` is the same on tiny volumes (seconds).
bench: $(STAMP)
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.run --model mrsynth-phantom-fsq --work-dir runs/bench-networks --output docs/PERFORMANCE-networks.md

clean:
	rm -rf outputs runs .pytest_cache
