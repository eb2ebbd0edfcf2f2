#!/usr/bin/env bash
# Install the package non-editably into a fresh virtualenv and run `diffaug` from elsewhere.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$python" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
"$tmp/venv/bin/python" -m pip install -q "$repo"
cd "$tmp"
"$tmp/venv/bin/python" -c "import diffaug_genomics_cli, diffaug_genomics.resources; import importlib.util as u; assert u.find_spec('cli') is None or 'site-packages/cli' not in str(u.find_spec('cli').origin)"
"$tmp/venv/bin/diffaug" --version
"$tmp/venv/bin/diffaug" --help >/dev/null
bash "$repo/.ci/smoke.sh" "$tmp/venv/bin/diffaug" "$tmp"
echo "check-install: OK"
