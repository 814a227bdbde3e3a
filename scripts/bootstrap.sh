#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv and link it as ./.venv.
# The venv lives in a cache folder keyed by a hash of the dependency list, so
# repeated runs and fresh clones reuse one 5.5 GB environment instead of
# filling the disk. Usage: bash scripts/bootstrap.sh [extras, default "test,minilm"]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test,minilm}"
py="${PYTHON:-python3}"
key=$( { cat pyproject.toml; echo "$extras"; "$py" --version; } | sha256sum | cut -c1-16)
root="${LAVISE_VENV_ROOT:-$HOME/.cache/lavise/venvs}"
venv="$root/$key"
if [ ! -f "$venv/.complete" ]; then
  echo "bootstrap: creating virtualenv $venv" >&2
  rm -rf "$venv"
  mkdir -p "$root"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  # torch first, so no dependency pulls in another build
  "$venv/bin/pip" install -q torch torchvision 2>&1 | grep -v "is ignored" || true
  "$venv/bin/pip" install -q -e ".[$extras]" 2>&1 | grep -v "is ignored" || true
  "$venv/bin/python" -c "import torch, torchvision, lavise" 
  touch "$venv/.complete"
  # keep only the three newest environments
  ls -1dt "$root"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
else
  "$venv/bin/pip" install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
fi
ln -sfn "$venv" .venv
