#!/usr/bin/env bash
# Smoke run of an installed `diffaug` on the packaged example: $1 = diffaug binary, $2 = work dir.
set -euo pipefail
diffaug=$1; work=$2
example=$("$(dirname "$diffaug")/python" -c "import importlib.resources as r; print(r.files('diffaug_genomics.resources') / 'examples' / 'dhs_example.fa')")
"$diffaug" encode "$example" -o "$work/smoke.h5" --length 200
"$diffaug" inspect "$work/smoke.h5"
"$diffaug" fit "$work/smoke.h5" -o "$work/run" --preset tiny --set schedule.warmup_epochs=1
"$diffaug" embed "$work/run" "$example" -o "$work/emb.h5"
"$diffaug" generate "$work/run" "$example" -o - --per-sequence 1 --steps 2 | grep -c "^>"
# the sbatch templates are package data: a printed script is complete, valid bash
(cd "$work" && "$diffaug" slurm fit smoke.h5 -o "$work/run2" --nodes 2 --gpus-per-node 4 --time 01:00:00 > job.sh && bash -n job.sh && ! grep -q "{{" job.sh)
