#!/usr/bin/env bash
# Install the dependencies and run the whole test suite on CPU (the README's test command).
# The FID Inception weights are taken from ../shared/data/weights/fid when present (no download).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
shared="${VAEGAN_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
weights="$shared/weights/fid/pt_inception-2015-12-05-6726825d.pth"
if [ -z "${TORCH_HOME:-}" ] && [ -f "$weights" ]; then
  export TORCH_HOME="$(mktemp -d)"
  mkdir -p "$TORCH_HOME/hub/checkpoints"
  ln -s "$weights" "$TORCH_HOME/hub/checkpoints/"
fi
export VAEGAN_SHARED_DATA="$shared" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# Headless Chromium renders compare_models.py's report.html in tests/test_compare_models.py; with
# VAEGAN_REQUIRE_CHROMIUM set, that test fails instead of skipping when Chromium is missing.
# Set VAEGAN_NO_APT=1 to install nothing system-wide: that test then skips.
if ! command -v chromium >/dev/null; then
  if [ -n "${VAEGAN_NO_APT:-}" ]; then
    echo "scripts/test.sh: chromium not found and VAEGAN_NO_APT is set: the report.html test will skip"
  else
    echo "scripts/test.sh: installing Debian's chromium with apt-get (for the report.html test; VAEGAN_NO_APT=1 skips this)"
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    export VAEGAN_REQUIRE_CHROMIUM=1
  fi
else
  export VAEGAN_REQUIRE_CHROMIUM=1
fi
python -m ruff check .
python -m ruff format --check .
python -m pytest -q "$@"
