#!/usr/bin/env bash
# Install everything (virtualenv, test extras, headless Chromium for the report test) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if { ! command -v chromium || ! command -v chromedriver; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing chromium + chromium-driver for the browser test" >&2
    (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "test: could not install chromium; the browser test will be skipped" >&2
  else
    echo "test: chromium/chromedriver not found; the browser test will be skipped" >&2
  fi
fi
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
