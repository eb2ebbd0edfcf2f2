#!/usr/bin/env bash
# Smoke run of an installed `diffaug` on the packaged example: $1 = diffaug binary, $2 = work dir.
set -euo pipefail
diffaug=$1; work=$2
example=$("$(dirname "$diffaug")/python" -c "import importlib.resources as r; print(r.files('diffaug_genomics.resources') / 'examples' / 'dhs_example.fa')")
"$diffaug" encode "$example" -o "$work/smoke.h5" --length 200
"$diffaug" inspect "$work/smoke.h5"
